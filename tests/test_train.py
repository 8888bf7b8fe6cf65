"""Training smoke test: one epoch on a tiny split proves the path and the metrics.json schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detbench import CLASS_NAMES
from detbench.data.datasets import SynthConfig, write_synthetic
from detbench.model.train import EPOCH_KEYS, TrainConfig, train

EXPECTED_TOP = {
    "schema",
    "weights",
    "weights_sha256",
    "epochs",
    "final",
    "per_class",
    "train_wall_time_s",
    "model",
    "versions",
    "hashes",
    "train_args",
    "class_names",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("train")
    data = write_synthetic(root / "data", SynthConfig(train=8, val=4, imgsz=64, seed=3))
    weights = train(TrainConfig(data=str(data), imgsz=64, epochs=1, batch=4, workers=0), root / "run")
    return weights, json.loads((weights.parent / "metrics.json").read_text())


def test_training_writes_weights_and_metrics(trained: tuple[Path, dict]) -> None:
    """One epoch produces best.pt and a metrics.json beside it."""
    weights, metrics = trained
    assert weights.is_file() and weights.name == "best.pt"
    assert set(metrics) >= EXPECTED_TOP


def test_metrics_schema(trained: tuple[Path, dict]) -> None:
    """Per-epoch losses and metrics, per-class metrics for all ten classes, model stats, versions."""
    weights, m = trained
    assert len(m["epochs"]) == 1
    assert set(m["epochs"][0]) == {"epoch", *EPOCH_KEYS}
    assert all(isinstance(v, float) for k, v in m["epochs"][0].items() if k != "epoch")
    assert set(m["per_class"]) == set(CLASS_NAMES)
    for entry in m["per_class"].values():
        assert set(entry) == {"precision", "recall", "mAP50", "mAP50-95"}
    assert m["model"]["parameters"] > 1_000_000 and m["model"]["gflops"] > 0
    assert m["model"]["size_mb"] == pytest.approx(weights.stat().st_size / 1e6)
    assert {"torch", "ultralytics", "python"} <= set(m["versions"])
    assert len(m["hashes"]["data"]) == 64 and len(m["hashes"]["config"]) == 64
    assert m["train_wall_time_s"] > 0
    assert m["class_names"] == list(CLASS_NAMES)


def test_a_results_csv_without_dfl_columns_is_read(tmp_path: Path) -> None:
    """YOLO26's head has no DFL, so its results.csv has no dfl losses: those keys are left out of the
    epoch rows (the report's table and curves skip absent keys), the others read as logged."""
    from detbench.model.train import _read_results_csv

    columns = ["epoch", *(c for c in EPOCH_KEYS.values() if "dfl" not in c)]
    csv_path = tmp_path / "results.csv"
    csv_path.write_text(", ".join(columns) + "\n" + ", ".join(str(i + 1) for i in range(len(columns))) + "\n")
    (row,) = _read_results_csv(csv_path)
    assert row == {
        "epoch": 1,
        **{k: float(columns.index(c) + 1) for k, c in EPOCH_KEYS.items() if "dfl" not in c},
    }
    assert "train_dfl_loss" not in row and "val_dfl_loss" not in row
