"""Declared dependencies the suite needs: a missing or broken one fails its tests, it never skips them."""

from __future__ import annotations

import pytest

DESELECT_HINT = "install it, or deselect these tests with -m 'not openvino'"
OPENVINO_FORMATS = ("openvino", "openvino-int8")


def require_openvino() -> None:
    """Fail the current test when OpenVINO, a declared dependency, cannot be imported.

    A skip here would keep CI green with a whole runtime untested; the user who means to run
    without it says so with ``-m "not openvino"``.
    """
    try:
        import openvino  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install failing in its own init
        pytest.fail(
            f"openvino is a declared dependency but cannot be imported ({type(exc).__name__}: {exc}); "
            f"{DESELECT_HINT}",
            pytrace=False,
        )


def needs_openvino(backend: str) -> bool:
    """True for a registered backend whose artifact OpenVINO builds or runs (fp32, bf16 and INT8 IRs)."""
    from detbench.runtimes.backends import REGISTRY

    return REGISTRY[backend].artifact_format in OPENVINO_FORMATS


def openvino_marks(backend: str) -> list[pytest.MarkDecorator]:
    """``[pytest.mark.openvino]`` for a backend that needs OpenVINO: the mark's setup then fails the
    test where OpenVINO cannot import (detbench.plugin), and ``-m "not openvino"`` deselects it."""
    return [pytest.mark.openvino] if needs_openvino(backend) else []


def require_backend(backend: str) -> None:
    """Fail the current test when ``backend`` needs OpenVINO and OpenVINO cannot be imported."""
    if needs_openvino(backend):
        require_openvino()
