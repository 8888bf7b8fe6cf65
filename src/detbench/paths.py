"""Where detbench keeps things: one cache root, movable with ``DETBENCH_CACHE``, and the package data."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

CACHE_ENV = "DETBENCH_CACHE"
# The committed baseline, its provenance, the default budgets and the goldens. In the checkout,
# src/detbench/fixtures is a symlink to the top-level fixtures/ (the source); the wheel build copies
# the files in, so an installed detbench needs no checkout. Installed as files, never zipped.
FIXTURES = Path(str(files("detbench") / "fixtures"))


def shown(path: Path) -> str:
    """``fixtures/golden/golden.npz`` for package data, else the path as given: short, machine-free."""
    try:
        return "fixtures/" + Path(path).resolve().relative_to(FIXTURES.resolve()).as_posix()
    except ValueError:
        return str(path)


def cache_root() -> Path:
    """The one directory every generated thing lives under (datasets, exports, runs)."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "detbench"
    return root.resolve()


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def configure_environment() -> None:
    """Keep ultralytics offline and its settings/weights/fonts dirs inside our cache.

    Called where detbench takes control (the ``detbench`` command, the pytest plugin's start, the
    A/B worker), never at import: importing detbench changes nothing global. Uses setdefault so a
    user who sets these variables deliberately keeps their choice. Must run before ultralytics is
    imported: it reads its settings directory and the offline switch once, at import time.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_root() / "ultralytics"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    # Keep matplotlib's font cache out of $HOME too (ultralytics imports it).
    os.environ.setdefault("MPLCONFIGDIR", str(cache_root() / "matplotlib"))
