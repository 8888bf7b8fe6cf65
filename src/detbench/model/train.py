"""Baseline training: a thin wrapper over ultralytics that records what it measured.

The defaults are the original study's settings (yolov8n, 5 epochs, batch 8, 128 px, CPU).
"""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detbench._fs import sha256_file
from detbench.data.datasets import load_dataset, tree_sha256

METRICS_FILE = "metrics.json"
EPOCH_KEYS = {
    "train_box_loss": "train/box_loss",
    "train_cls_loss": "train/cls_loss",
    "train_dfl_loss": "train/dfl_loss",
    "val_box_loss": "val/box_loss",
    "val_cls_loss": "val/cls_loss",
    "val_dfl_loss": "val/dfl_loss",
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "mAP50": "metrics/mAP50(B)",
    "mAP50-95": "metrics/mAP50-95(B)",
}


@dataclass
class TrainConfig:
    data: str
    model: str = "yolov8n.yaml"
    imgsz: int = 128
    epochs: int = 5
    batch: int = 8
    seed: int = 0
    workers: int = 2
    patience: int = 100
    extra: dict[str, Any] = field(default_factory=dict)  # passed through to ultralytics


def versions() -> dict[str, str]:
    import torch
    import ultralytics

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
    }


def _read_results_csv(path: Path) -> list[dict[str, float]]:
    """Each epoch's row; a column the model does not log is left out (YOLO26's head has no DFL, so
    its results.csv has no dfl losses), as the report's table and curves expect."""
    with open(path, newline="") as fh:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(fh)]
    return [
        {"epoch": int(float(r["epoch"])), **{k: float(r[c]) for k, c in EPOCH_KEYS.items() if c in r}}
        for r in rows
    ]


def per_class_metrics(metrics: Any, names: tuple[str, ...]) -> dict[str, dict[str, float | None]]:
    """Per-class P, R, mAP50, mAP50-95 from an ultralytics DetMetrics; None for a class with no
    ground truth in the split (ultralytics leaves it out rather than scoring it 0)."""
    box = metrics.box
    out: dict[str, dict[str, float | None]] = {
        n: {"precision": None, "recall": None, "mAP50": None, "mAP50-95": None} for n in names
    }
    for i, c in enumerate(metrics.ap_class_index):
        out[names[int(c)]] = {
            "precision": float(box.p[i]),
            "recall": float(box.r[i]),
            "mAP50": float(box.ap50[i]),
            "mAP50-95": float(box.ap[i]),
        }
    return out


def model_stats(weights: Path, imgsz: int) -> dict[str, float]:
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    model = YOLO(str(weights)).model
    return {
        "size_mb": weights.stat().st_size / 1e6,
        "parameters": int(get_num_params(model)),
        "gflops": float(get_flops(model, imgsz)),
    }


def validate(weights: Path | str, data: Path | str, imgsz: int, batch: int = 16, *, rect: bool = True) -> Any:
    """ultralytics' own validation of a checkpoint on the val split.

    ``rect`` True is ``YOLO.val()``'s default: rectangular batches, each image letterboxed to its
    batch's shape, a stride multiple plus half a stride of padding (160 px for a 124x128 image at
    imgsz 128). False: every image letterboxed to the square ``imgsz``, the input detbench's own
    preprocessing gives every backend.
    """
    from ultralytics import YOLO

    from detbench.paths import cache_dir

    return YOLO(str(weights)).val(
        project=str(cache_dir("runs")),
        name="val",
        exist_ok=True,
        data=str(data),
        imgsz=imgsz,
        batch=batch,
        rect=rect,
        device="cpu",
        plots=False,
        verbose=False,
        workers=0,
    )


def train(cfg: TrainConfig, out: Path) -> Path:
    """Train, then write ``metrics.json`` next to the best weights; return the weights path."""
    from ultralytics import YOLO

    dataset = load_dataset(cfg.data)  # fail early, naming the file, on a malformed data.yaml
    out = Path(out).resolve()
    t0 = time.perf_counter()
    model = YOLO(cfg.model)
    model.train(
        data=str(Path(cfg.data).resolve()),
        imgsz=cfg.imgsz,
        epochs=cfg.epochs,
        batch=cfg.batch,
        seed=cfg.seed,
        workers=cfg.workers,
        patience=cfg.patience,
        device="cpu",
        plots=False,
        amp=False,
        deterministic=True,
        project=str(out.parent),
        name=out.name,
        exist_ok=True,
        verbose=False,
        **cfg.extra,
    )
    wall = time.perf_counter() - t0
    run_dir = Path(model.trainer.save_dir)
    weights = run_dir / "weights" / "best.pt"
    final = validate(weights, cfg.data, cfg.imgsz)
    model_hash = sha256_file(cfg.model) if Path(cfg.model).is_file() else cfg.model
    metrics = {
        "schema": 1,
        "weights": weights.name,
        "weights_sha256": sha256_file(weights),
        "epochs": _read_results_csv(run_dir / "results.csv"),
        "final": {
            "precision": float(final.box.mp),
            "recall": float(final.box.mr),
            "mAP50": float(final.box.map50),
            "mAP50-95": float(final.box.map),
        },
        "per_class": per_class_metrics(final, dataset.names),
        "train_wall_time_s": wall,
        "model": model_stats(weights, cfg.imgsz),
        "versions": versions(),
        "hashes": {
            "data": tree_sha256(dataset.root),
            "data_yaml": sha256_file(cfg.data),
            "config": hashlib.sha256(
                json.dumps(asdict(cfg), sort_keys=True).encode() + str(model_hash).encode()
            ).hexdigest(),
        },
        "train_args": asdict(cfg),
        "class_names": list(dataset.names),
    }
    (weights.parent / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return weights
