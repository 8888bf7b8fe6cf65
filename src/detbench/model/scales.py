"""Untrained checkpoints of any scale and family (YOLOv8 by default), for latency work and for checks
of a family's structure: neither depends on the weights, so nothing is trained or downloaded.
Cached by ``runtimes.export.untrained_checkpoint``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def build_untrained_checkpoint(
    scale: str, dest: Path, *, imgsz: int, names: Sequence[str], seed: int = 0, family: str = "yolov8"
) -> None:
    """An untrained ``{family}{scale}`` (ultralytics' bundled ``{family}{scale}.yaml``, e.g. yolo11n)
    with ``len(names)`` classes, saved as ultralytics saves a checkpoint (fp16 module under "model",
    "train_args" with imgsz), so load_detection_model reads it."""
    import torch
    import ultralytics
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(f"{family}{scale}.yaml", nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    ckpt = {
        "model": model.half(),
        "train_args": {"imgsz": imgsz},
        "version": ultralytics.__version__,
        "date": None,
        "note": f"untrained {family}{scale} (seed {seed}) for latency benchmarks only",
    }
    torch.save(ckpt, dest)
