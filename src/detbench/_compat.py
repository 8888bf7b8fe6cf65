"""Version gates and upstream deprecation noise, kept in one place."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_torch_exporters() -> Iterator[None]:
    """Silence torch's deprecation notices around TorchScript tracing and the TorchScript-based
    ONNX exporter. Both are deprecated upstream but are what the study measured and what
    ultralytics still uses; we keep exercising them until torch removes them (then the tox
    matrix fails loudly, which is the signal we want)."""
    with warnings.catch_warnings():
        # Narrow in scope (only around export/load calls), broad in category: torch attributes
        # these notices to the caller's module, so a module filter would not match them.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            from torch.jit import TracerWarning
        except ImportError:  # pragma: no cover - torch without TorchScript
            pass
        else:
            warnings.filterwarnings("ignore", category=TracerWarning)
        yield


def onnx_opset_range() -> tuple[int, int]:
    """Opsets the TorchScript-based ONNX exporter (the one detbench and ultralytics use) accepts.

    torch keeps the bounds in a private module; fall back to torch 2.13/2.14's values (7, 20).
    """
    try:
        from torch.onnx import _constants as c

        return int(c.ONNX_MIN_OPSET), int(c.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):  # pragma: no cover - a torch that moved them
        return 7, 20
