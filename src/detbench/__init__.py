"""detbench: a pytest-driven benchmark and regression suite for CPU inference of object detectors."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detbench.runtimes.pipeline import LoadedPipeline

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


def load_pipeline(tune_json_path: str | os.PathLike, *, which: str = "recommended") -> LoadedPipeline:
    """The pipeline ``detbench tune`` recommended, ready to call: ``pipeline(path) -> Detections``
    (boxes in the full image's pixels). ``which="reference"`` gives the reference stages (Pillow decode,
    ultralytics' letterbox and NMS) on the same backend configuration. One per thread: it reuses buffers.
    """
    from detbench.tune.pipelines import pipeline_from_tune

    return pipeline_from_tune(tune_json_path, which).load()


__all__ = ["CLASS_NAMES", "__version__", "load_pipeline"]
