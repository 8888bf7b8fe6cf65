"""Where detbench keeps things: one cache root, movable with ``DETBENCH_CACHE``."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DETBENCH_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "fixtures"


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

    Uses setdefault so a user who sets these variables deliberately keeps their choice.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_root() / "ultralytics"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    # Keep matplotlib's font cache out of $HOME too (ultralytics imports it).
    os.environ.setdefault("MPLCONFIGDIR", str(cache_root() / "matplotlib"))
