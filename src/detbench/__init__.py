"""detbench: a pytest-driven benchmark and regression suite for CPU inference of object detectors."""

from __future__ import annotations

# Importing detbench changes nothing global: environment set-up for ultralytics happens where detbench
# takes control (detbench.paths.configure_environment, called by the CLI and the pytest plugin).

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
