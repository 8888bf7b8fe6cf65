"""The committed baseline: pinned, good enough, and reproducible from its recorded provenance."""

from __future__ import annotations

import json

import pytest

from detbench._fs import sha256_file
from detbench.cli import retrain as cli_retrain
from detbench.data.datasets import tree_sha256, write_synthetic
from detbench.model.baseline import BASELINE_DIR, PROVENANCE, baseline_synth_config, baseline_weights
from detbench.model.retrain import RetrainSettings

METRICS = json.loads((BASELINE_DIR / "metrics.json").read_text())


def test_baseline_meets_the_accuracy_floor() -> None:
    """mAP50 on the synthetic val split is at least 0.6, as recorded at training time."""
    assert METRICS["final"]["mAP50"] >= 0.6
    assert METRICS["epochs"][-1]["mAP50"] >= 0.6


def test_provenance_pins_the_committed_weights() -> None:
    """provenance.json, metrics.json and the file on disk agree on the sha256."""
    prov = json.loads(PROVENANCE.read_text())
    assert prov["weights_sha256"] == METRICS["weights_sha256"] == sha256_file(baseline_weights())
    assert prov["train_args"]["model"] == "yolov8n.yaml" and prov["train_args"]["imgsz"] == 128


def test_generator_still_produces_the_training_data(tmp_path) -> None:
    """The synthetic dataset regenerated from the recorded seed and sizes hashes to what the
    baseline was trained on, so scripts/train_baseline.py reproduces its inputs exactly."""
    write_synthetic(tmp_path, baseline_synth_config())
    assert tree_sha256(tmp_path) == METRICS["hashes"]["data"]


def test_metrics_record_every_epoch() -> None:
    """One row per trained epoch with losses and metrics."""
    assert len(METRICS["epochs"]) == json.loads(PROVENANCE.read_text())["train_args"]["epochs"]
    assert METRICS["epochs"][0]["train_box_loss"] > METRICS["epochs"][-1]["train_box_loss"]


@pytest.mark.parametrize("key", ["precision", "recall", "mAP50", "mAP50-95"])
def test_per_class_metrics_cover_all_classes(key: str) -> None:
    """The class-wise view of the study: all ten classes have a value."""
    assert all(METRICS["per_class"][c][key] is not None for c in METRICS["class_names"])


def test_retrain_defaults_are_the_recorded_settings() -> None:
    """RetrainSettings() (scripts/train_baseline.py with no options) is what provenance.json records."""
    prov = json.loads(PROVENANCE.read_text())
    s = RetrainSettings()
    assert prov["synthetic_dataset"] == {"train": s.train, "val": s.val, "imgsz": s.imgsz, "seed": s.seed}
    assert (prov["train_args"]["epochs"], prov["train_args"]["batch"]) == (s.epochs, s.batch)
    assert s.out == BASELINE_DIR


def test_train_baseline_options_reach_retrain(monkeypatch, tmp_path, capsys) -> None:
    """The script's options become RetrainSettings; the command line is recorded in provenance.json."""
    seen = []

    def fake_retrain(settings: RetrainSettings, *, command: str) -> dict:
        seen.append(settings)
        return {"command": command}

    monkeypatch.setattr(cli_retrain, "retrain", fake_retrain)
    assert cli_retrain.main(["--epochs", "2", "--out", str(tmp_path)]) == 0
    assert seen == [RetrainSettings(epochs=2, out=tmp_path)]
    command = json.loads(capsys.readouterr().out)["command"]
    assert command == f"python scripts/train_baseline.py --epochs 2 --out {tmp_path}"
