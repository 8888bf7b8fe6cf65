"""Untrained YOLOv8 checkpoints of any scale, for latency work: latency does not depend on the
weights, so nothing is trained or downloaded. Cached like every artifact."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detbench import CLASS_NAMES


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


def untrained_checkpoint(scale: str, imgsz: int, names: Sequence[str] = CLASS_NAMES) -> Path:
    """The cached untrained ``yolov8{scale}`` checkpoint (built on first use)."""
    from detbench.runtimes.cache import ArtifactCache
    from detbench.runtimes.export import toolchain_versions

    fields = {
        "scale": scale,
        "names": list(names),
        "imgsz": imgsz,
        "seed": 0,
        "versions": toolchain_versions(),
    }
    ckpt = ArtifactCache().get_or_build(
        "untrained-checkpoint",
        fields,
        f"yolov8{scale}.pt",
        lambda dest: build_untrained_checkpoint(scale, dest, imgsz=imgsz, names=names),
    )
    return ckpt.path
