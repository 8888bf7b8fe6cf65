"""Declared dependencies the suite needs: a missing or broken one fails its tests, it never skips them."""

from __future__ import annotations

import pytest

DESELECT_HINT = "install it, or deselect these tests with -m 'not openvino'"


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
