"""Train the committed baseline (YOLOv8n, 128 px) on the synthetic dataset and commit-ready copy it.

Lives in the package so ``--detbench-retrain`` works from an installed wheel too;
``scripts/train_baseline.py`` is its command-line entry in the checkout.

    python scripts/train_baseline.py            # the settings that produced fixtures/baseline
    python scripts/train_baseline.py --epochs 5 --train 200   # a quicker, weaker model

Writes fixtures/baseline/{best.pt,metrics.json,provenance.json}. Took 18 min on this 2-core machine.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detbench import paths
from detbench._fs import sha256_file
from detbench.data.datasets import SynthConfig, write_synthetic
from detbench.model.train import TrainConfig, train, versions

DEFAULT_SYNTH = SynthConfig()  # the embedded default dataset: see detbench.data.datasets


@dataclass(frozen=True)
class RetrainSettings:
    """The defaults are the settings that produced fixtures/baseline."""

    train: int = DEFAULT_SYNTH.train
    val: int = DEFAULT_SYNTH.val
    seed: int = DEFAULT_SYNTH.seed
    imgsz: int = 128
    epochs: int = 35
    batch: int = 16
    out: Path = paths.FIXTURES / "baseline"


def retrain(settings: RetrainSettings, *, command: str) -> dict[str, Any]:
    """Train on the synthetic dataset and write best.pt, metrics.json and provenance.json into
    ``settings.out``; ``command`` is recorded as the way to reproduce them. Returns the provenance."""
    s = settings
    synth = SynthConfig(train=s.train, val=s.val, imgsz=s.imgsz, seed=s.seed)
    data_dir = paths.cache_dir("datasets") / synth.key()
    data_yaml = write_synthetic(data_dir, synth)
    cfg = TrainConfig(data=str(data_yaml), imgsz=s.imgsz, epochs=s.epochs, batch=s.batch)
    weights = train(cfg, paths.cache_dir("runs") / f"baseline-{synth.key()}-e{s.epochs}")

    s.out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(weights, s.out / "best.pt")
    metrics = json.loads((weights.parent / "metrics.json").read_text())
    metrics["train_args"]["data"] = "<synthetic: see provenance.json>"  # no machine paths
    (s.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    provenance = {
        "command": command,
        "synthetic_dataset": asdict(synth),
        "train_args": {**asdict(cfg), "data": f"<cache>/datasets/{synth.key()}/data.yaml"},
        "versions": versions(),
        "weights_sha256": sha256_file(s.out / "best.pt"),
        "val_mAP50": metrics["final"]["mAP50"],
        "val_mAP50-95": metrics["final"]["mAP50-95"],
    }
    (s.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance
