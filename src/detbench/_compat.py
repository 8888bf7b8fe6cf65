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


def torch_compile_unavailable() -> str | None:
    """Why ``torch.compile`` (inductor, CPU) cannot run here, or None: it needs dynamo support for
    this Python and a C++ compiler to build its kernels."""
    import os
    import shutil

    import torch

    try:
        import torch._dynamo as dynamo

        supported = dynamo.is_dynamo_supported()
    except Exception as exc:  # an import failure of torch's compiler stack is the reason itself
        return f"torch.compile cannot be imported with torch {torch.__version__} ({exc})"
    if not supported:
        return f"torch.compile (dynamo) does not support this Python with torch {torch.__version__}"
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        return f"torch.compile's inductor needs a C++ compiler; {cxx!r} is not on PATH"
    return None


def onnx_opset_range() -> tuple[int, int]:
    """Opsets the TorchScript-based ONNX exporter (the one detbench and ultralytics use) accepts.

    torch keeps the bounds in a private module; fall back to torch 2.13/2.14's values (7, 20).
    """
    try:
        from torch.onnx import _constants as c

        return int(c.ONNX_MIN_OPSET), int(c.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):  # pragma: no cover - a torch that moved them
        return 7, 20
