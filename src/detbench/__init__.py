"""detbench: a pytest-driven benchmark and regression suite for CPU inference of object detectors."""

from __future__ import annotations

from detbench import paths as _paths

# Must run before anything imports ultralytics: it reads its settings directory and the
# offline switch once, at import time.
_paths.configure_environment()

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, ...] = (
    "sunglass",
    "hat",
    "jacket",
    "shirt",
    "pants",
    "shorts",
    "skirt",
    "dress",
    "bag",
    "shoes",
)
