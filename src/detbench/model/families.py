"""Briefly trained models of the other ultralytics families (YOLO11n, YOLO12n, YOLO26n) for the
family matrix (tests/test_families.py, ``tox -e families``, scripts/measure_families.py).

Each is trained from scratch on the baseline's synthetic dataset (same generator, seed and 10
classes) with the baseline's training wrapper (detbench.model.train), and cached as
``$DETBENCH_CACHE/families/<family>-<key>/best.pt`` next to its ``metrics.json``; the key covers
the settings and the torch/ultralytics versions, so a second run reuses the weights.

    python scripts/train_family.py yolo11n            # train (or reuse) and print the weights path
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from detbench import paths
from detbench._fs import locked
from detbench.data.datasets import SynthConfig
from detbench.model.baseline import synthetic_dataset
from detbench.model.train import METRICS_FILE, TrainConfig, train, versions

# A parallel first run waits this long for the one training the family (minutes per family on a
# 2-core CPU, more at more epochs) before it gives up.
TRAIN_LOCK_TIMEOUT_S = 4 * 3600

# The families the matrix proves, by their ultralytics model yaml (n scale, built from scratch).
FAMILIES: dict[str, str] = {
    "yolo11n": "yolo11n.yaml",
    "yolo12n": "yolo12n.yaml",
    "yolo26n": "yolo26n.yaml",
}


@dataclass(frozen=True)
class FamilySettings:
    """Long enough that the suite's "had detections" floors and INT8's accuracy bounds judge a model
    that detects (about 15 minutes per family on a 2-core CPU, once: the weights are cached).

    ultralytics' defaults are for long runs: 3 warm-up epochs and a learning rate decayed to 1 % by
    the last epoch left a 5-epoch YOLO11n at mAP50 0.13, detecting in 21 of 50 drawn scenes (the
    suite needs half), so the warm-up is one epoch and the rate is held (``lrf`` 1). With that, 5
    epochs still left YOLO11n/12n/26n at mAP50 0.34/0.33/0.24, detecting in under half of the drawn
    scenes, hence 12."""

    family: str
    train: int = SynthConfig().train
    val: int = SynthConfig().val
    seed: int = SynthConfig().seed
    imgsz: int = 128
    epochs: int = 12
    batch: int = 16
    warmup_epochs: float = 1.0
    lrf: float = 1.0

    def synth(self) -> SynthConfig:
        return SynthConfig(train=self.train, val=self.val, imgsz=self.imgsz, seed=self.seed)

    def key(self) -> str:
        """What decides the weights' bytes: the settings and the versions that train them."""
        blob = json.dumps({"settings": asdict(self), "versions": _train_versions()}, sort_keys=True)
        return f"{self.family}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def _train_versions() -> dict[str, str]:
    v = versions()
    return {"torch": v["torch"], "ultralytics": v["ultralytics"]}


def family_dir(settings: FamilySettings) -> Path:
    return paths.cache_root() / "families" / settings.key()


def _complete(out: Path) -> bool:
    return (out / "best.pt").is_file() and (out / METRICS_FILE).is_file()


def family_weights(settings: FamilySettings, *, lock_timeout: float = TRAIN_LOCK_TIMEOUT_S) -> Path:
    """Train ``settings.family`` unless its cached ``best.pt`` exists; return the weights path.

    Trained under the family folder's cross-process lock (``<folder>.lock``), so parallel first
    runs train once: the others wait, then reuse it. The weights and metrics.json are written to a
    private folder and renamed into place only once training finished, so an interrupted run
    leaves no half-written cache entry behind.
    """
    if settings.family not in FAMILIES:
        raise ValueError(f"unknown family {settings.family!r}; known: {', '.join(FAMILIES)}")
    out = family_dir(settings)
    if _complete(out):
        return out / "best.pt"
    with locked(out, lock_timeout):
        if _complete(out):  # whoever held the lock before us trained it while we waited
            return out / "best.pt"
        # Holding the lock proves no live writer owns a temp folder of this key: sweep leftovers.
        for stale in out.parent.glob(f"{out.name}.tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        data_yaml = synthetic_dataset(settings.synth())
        cfg = TrainConfig(
            data=str(data_yaml),
            model=FAMILIES[settings.family],
            imgsz=settings.imgsz,
            epochs=settings.epochs,
            batch=settings.batch,
            seed=settings.seed,
            extra={"warmup_epochs": settings.warmup_epochs, "lrf": settings.lrf},
        )
        weights = train(cfg, paths.cache_dir("runs") / f"family-{settings.key()}")
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        try:
            tmp.mkdir(parents=True)
            shutil.copy2(weights, tmp / "best.pt")
            metrics = json.loads((weights.parent / METRICS_FILE).read_text())
            metrics["family_settings"] = asdict(settings)
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
            if out.exists():  # an incomplete leftover (not _complete): replaced whole
                shutil.rmtree(out)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out / "best.pt"
