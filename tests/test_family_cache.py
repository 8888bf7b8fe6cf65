"""detbench.model.families' cache: keyed by settings and versions, reused without training, never
half-written. Fast (training replaced by a fake); the real matrix is tests/test_families.py."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from detbench.model import families
from detbench.model.families import FamilySettings, family_dir, family_weights


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DETBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(families, "synthetic_dataset", lambda cfg: tmp_path / "data.yaml")
    return tmp_path


def _fake_train(calls: list) -> object:
    def train(cfg, out: Path) -> Path:
        calls.append(cfg)
        weights = out / "weights" / "best.pt"
        weights.parent.mkdir(parents=True)
        weights.write_bytes(b"weights of " + cfg.model.encode())
        (weights.parent / "metrics.json").write_text(json.dumps({"final": {"mAP50": 0.5}}))
        return weights

    return train


def test_the_key_changes_with_every_setting_and_the_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two settings that differ in one field, or one toolchain version, never share weights."""
    base = FamilySettings(family="yolo11n")
    keys = {base.key()} | {
        replace(base, **{f: v}).key() for f, v in [("epochs", 9), ("train", 10), ("seed", 1)]
    }
    keys.add(replace(base, family="yolo26n").key())
    assert len(keys) == 5
    monkeypatch.setattr(families, "_train_versions", lambda: {"torch": "0", "ultralytics": "0"})
    assert base.key() not in keys


def test_a_cached_model_is_reused_without_training(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first call trains and copies best.pt and metrics.json into the family's folder; the
    second returns that path and trains nothing."""
    calls: list = []
    monkeypatch.setattr(families, "train", _fake_train(calls))
    settings = FamilySettings(family="yolo12n", epochs=1)
    first = family_weights(settings)
    assert first == family_dir(settings) / "best.pt" and first.read_bytes() == b"weights of yolo12n.yaml"
    assert json.loads((first.parent / "metrics.json").read_text())["family_settings"]["epochs"] == 1
    assert family_weights(settings) == first and len(calls) == 1


def test_two_parallel_first_runs_train_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two callers that both find the cache cold: one trains, the other waits on the family's lock
    and reuses its weights. The first training waits (up to 1 s) for a second one to start, so
    without the lock both train, every time."""
    calls: list = []
    second = threading.Event()
    fake = _fake_train(calls)

    def slow_train(cfg, out: Path) -> Path:
        if calls:
            second.set()
        weights = fake(cfg, out.with_name(f"{out.name}-{len(calls)}"))  # each its own run folder
        if len(calls) == 1:
            second.wait(timeout=1.0)
        return weights

    monkeypatch.setattr(families, "train", slow_train)
    settings = FamilySettings(family="yolo11n", epochs=1)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda _: family_weights(settings), range(2)))
    assert len(calls) == 1, f"{len(calls)} trainings"
    assert got == [family_dir(settings) / "best.pt"] * 2
    assert not list(family_dir(settings).parent.glob("*.tmp*")), "a temp folder was left behind"


def test_an_interrupted_training_leaves_no_cache_entry(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training that dies leaves the family's folder absent, so the next call trains again."""

    def dies(cfg, out):
        raise KeyboardInterrupt

    monkeypatch.setattr(families, "train", dies)
    settings = FamilySettings(family="yolo11n")
    with pytest.raises(KeyboardInterrupt):
        family_weights(settings)
    assert not family_dir(settings).exists()


def test_an_unknown_family_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown family 'yolo99n'"):
        family_weights(FamilySettings(family="yolo99n"))
