"""Untrained YOLOv8 checkpoints of any scale, for latency work: latency does not depend on the
weights, so nothing is trained or downloaded. Cached by ``runtimes.export.untrained_checkpoint``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def build_untrained_checkpoint(
    scale: str, dest: Path, *, imgsz: int, names: Sequence[str], seed: int = 0
) -> None:
    """An untrained ``yolov8{scale}`` with ``len(names)`` classes, saved as ultralytics saves a
    checkpoint (fp16 module under "model", "train_args" with imgsz), so load_detection_model reads it."""
    import torch
    import ultralytics
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(f"yolov8{scale}.yaml", nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    ckpt = {
        "model": model.half(),
        "train_args": {"imgsz": imgsz},
        "version": ultralytics.__version__,
        "date": None,
        "note": f"untrained yolov8{scale} (seed {seed}) for latency benchmarks only",
    }
    torch.save(ckpt, dest)
