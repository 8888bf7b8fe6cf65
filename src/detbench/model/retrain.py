"""Train the committed baseline (YOLOv8n, 128 px) on the synthetic dataset and commit-ready copy it.

Lives in the package so ``--detbench-retrain`` works from an installed wheel too;
``scripts/train_baseline.py`` is its command-line entry in the checkout.

    python scripts/train_baseline.py            # the settings that produced fixtures/baseline
    python scripts/train_baseline.py --epochs 5 --train 200   # a quicker, weaker model

Writes fixtures/baseline/{best.pt,metrics.json,provenance.json}. Took 18 min on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from detbench import paths
from detbench._fs import sha256_file
from detbench.data.datasets import SynthConfig, write_synthetic
from detbench.model.train import TrainConfig, train, versions

DEFAULT_SYNTH = SynthConfig()  # the embedded default dataset: see detbench.data.datasets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=DEFAULT_SYNTH.train)
    ap.add_argument("--val", type=int, default=DEFAULT_SYNTH.val)
    ap.add_argument("--seed", type=int, default=DEFAULT_SYNTH.seed)
    ap.add_argument("--imgsz", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=35)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=paths.FIXTURES / "baseline")
    args = ap.parse_args(argv)

    synth = SynthConfig(train=args.train, val=args.val, imgsz=args.imgsz, seed=args.seed)
    data_dir = paths.cache_dir("datasets") / synth.key()
    data_yaml = write_synthetic(data_dir, synth)
    cfg = TrainConfig(data=str(data_yaml), imgsz=args.imgsz, epochs=args.epochs, batch=args.batch)
    weights = train(cfg, paths.cache_dir("runs") / f"baseline-{synth.key()}-e{args.epochs}")

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(weights, args.out / "best.pt")
    metrics = json.loads((weights.parent / "metrics.json").read_text())
    metrics["train_args"]["data"] = "<synthetic: see provenance.json>"  # no machine paths
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    provenance = {
        "command": "python scripts/train_baseline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "synthetic_dataset": asdict(synth),
        "train_args": {**asdict(cfg), "data": f"<cache>/datasets/{synth.key()}/data.yaml"},
        "versions": versions(),
        "weights_sha256": sha256_file(args.out / "best.pt"),
        "val_mAP50": metrics["final"]["mAP50"],
        "val_mAP50-95": metrics["final"]["mAP50-95"],
    }
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))
    return 0
