"""``detbench train``: train a YOLOv8 baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from detbench.cli import _existing, _imgsz, _out_dir, _positive


def run(args: argparse.Namespace) -> int:
    from detbench.data.datasets import load_dataset
    from detbench.data.labels import validate_dataset
    from detbench.model.train import TrainConfig, train

    validate_dataset(load_dataset(args.data), allow_background=True)
    weights = train(
        TrainConfig(
            data=str(args.data),
            model=args.model,
            imgsz=args.imgsz,
            epochs=args.epochs,
            batch=args.batch,
            seed=args.seed,
        ),
        args.out,
    )
    print(weights)
    print(weights.parent / "metrics.json")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a YOLOv8 baseline (the original study's settings by default)")
    t.add_argument("--data", type=_existing, required=True)
    t.add_argument("--model", default="yolov8n.yaml", help="scale yaml (from scratch) or .pt to fine-tune")
    t.add_argument("--imgsz", type=_imgsz, default=128)
    t.add_argument("--epochs", type=_positive, default=5)
    t.add_argument("--batch", type=_positive, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=_out_dir, default=Path("runs/train"))
    t.set_defaults(func=run)
