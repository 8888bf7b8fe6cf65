"""`detbench gate --history` re-baselining (history.gate.gate_history): which run each benchmark is
paired with, both artifacts restored from the store, the fallbacks and the CLI's lines, exit status and
step summary. Timing is faked here; tests/test_gate_rebaseline_route.py times real ONNX artifacts."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from _support.runs import run_with
from detbench.cli import main
from detbench.history import artifacts as arts
from detbench.history import gate as history_gate
from detbench.history import store
from detbench.history.file import FileStore
from detbench.history.rebaseline import PAIRED, UNPAIRED, rebaseline
from detbench.perf.sequential import NO_REGRESSION, REGRESSION, SequentialVerdict

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NAME = "t.py::test_latency[onnxruntime]"


def verdict(name: str, outcome: str) -> SequentialVerdict:
    ratio = 1.3 if outcome == REGRESSION else 1.0
    return SequentialVerdict(name=name, outcome=outcome, ratio=ratio, ci_low=ratio - 0.02,
                             ci_high=ratio + 0.02, confidence=0.9989, p_value=1e-4, p_adjusted=1e-4,
                             alpha=0.01, min_effect=0.03, blocks=12, looks=1, looks_planned=19,
                             seconds=1.0, reason="test")  # fmt: skip


class Fake:
    """rebaseline with a loader that records the bytes it loads and a compare whose outcome is set:
    the slow artifact's bytes make a regression."""

    def __init__(self) -> None:
        self.loaded: list[bytes] = []

    def loader(self, ident, path: Path):
        data = Path(path).read_bytes()
        self.loaded.append(data)

        class Runner:
            def run(self, x: np.ndarray, data: bytes = data) -> bytes:
                return data

        return Runner()

    def compare(self, base_fn, cand_fn, *, name: str, **kwargs) -> SequentialVerdict:
        return verdict(name, REGRESSION if cand_fn().startswith(b"slow") else NO_REGRESSION)

    def rebaseline(self, *args, **kwargs):
        return functools.partial(
            rebaseline, loader=self.loader, compare=self.compare, is_unavailable=lambda b: None
        )(*args, **kwargs)


@pytest.fixture(autouse=True)
def this_machine(monkeypatch):
    monkeypatch.setenv("DETBENCH_MACHINE_ID", "testmachine0")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for key, data in {"a": b"fast graph", "b": b"fast graph, other bytes", "slow": b"slow graph"}.items():
        out[key] = tmp_path / "artifacts" / f"{key}.onnx"
        out[key].parent.mkdir(exist_ok=True)
        out[key].write_bytes(data * 40)
    return out


def save(s: store.Store, path: Path, hour: int, tag: str | None, *, threads: int = 1) -> str:
    """A run that timed ``path``, ``hour`` hours after T0, saved with its artifact; its file then removed
    from disk so only the store's copy can be timed."""
    doc = run_with({NAME: path}, seed=hour)
    doc["datetime"] = (T0 + timedelta(hours=hour)).isoformat()
    doc["benchmarks"][0]["extra_info"]["threads"] = threads
    bundles, refused = arts.collect(doc)
    return s.save(doc, tag=tag, artifacts=bundles, refused=refused)


def gate(s: store.Store, tmp: Path, fake: Fake, **kw) -> history_gate.HistoryComparison:
    return history_gate.gate_history(
        s.load().runs,
        location=s.location,
        stores=[s],
        workdir=tmp / "work",
        rebaseline_fn=fake.rebaseline,
        **kw,
    )


class TestPairing:
    def test_main_run_is_the_baseline_over_newer_runs(self, tmp_path, files) -> None:
        """The newest run tagged main, not the newer pull-request run; both artifacts from the store."""
        s = FileStore(tmp_path / "h")
        main_id = save(s, files["a"], 0, "main")
        save(s, files["b"], 1, "pr-1")
        cand_id = save(s, files["slow"], 2, "pr-2")
        fake = Fake()
        got = gate(s, tmp_path, fake)
        (c,) = got.comparisons
        assert got.candidate.run_id == cand_id and got.paired_with == {NAME: main_id}
        assert c.comparison == PAIRED and c.outcome == REGRESSION
        assert fake.loaded == [files["a"].read_bytes(), files["slow"].read_bytes()]

    def test_without_a_main_run_the_newest_earlier_run_is_noted(self, tmp_path, files) -> None:
        s = FileStore(tmp_path / "h")
        save(s, files["slow"], 0, None)
        other = save(s, files["a"], 1, "pr-1")
        save(s, files["b"], 2, None)
        (c,) = gate(s, tmp_path, Fake()).comparisons
        assert c.comparison == PAIRED and c.outcome == NO_REGRESSION
        assert c.notes[0].startswith("no earlier run tagged 'main' ran it") and other in c.notes[0]

    def test_named_baseline(self, tmp_path, files) -> None:
        s = FileStore(tmp_path / "h")
        slow = save(s, files["slow"], 0, "v1")
        save(s, files["a"], 1, "main")
        save(s, files["b"], 2, None)
        got = gate(s, tmp_path, Fake(), baseline="v1")
        assert got.paired_with == {NAME: slow} and got.comparisons[0].outcome == NO_REGRESSION

    def test_other_configuration_falls_back_unpaired(self, tmp_path, files) -> None:
        """A main run with 2 threads is no baseline for 1 thread: unpaired, saying why."""
        s = FileStore(tmp_path / "h")
        save(s, files["a"], 0, "main", threads=2)
        save(s, files["slow"], 1, None)
        fake = Fake()
        (c,) = gate(s, tmp_path, fake).comparisons
        assert c.comparison == UNPAIRED and fake.loaded == []
        assert c.why == "no earlier run of this machine class ran it with this configuration"
        assert c.unpaired is not None and c.unpaired.status == "missing"

    def test_pruned_baseline_artifact_falls_back(self, tmp_path, files) -> None:
        """The main run's artifact pruned (only the newest run's references kept): unpaired, with why."""
        s = FileStore(tmp_path / "h")
        save(s, files["a"], 0, "main")
        save(s, files["slow"], 1, None)
        assert len(s.prune_artifacts(keep_runs=1).removed) == 1
        fake = Fake()
        (c,) = gate(s, tmp_path, fake).comparisons
        assert c.comparison == UNPAIRED and fake.loaded == []
        assert c.why == f"artifact missing: the baseline's artifact is not in {s.location}"
        assert c.unpaired is not None and c.unpaired.status != "missing"

    def test_candidate_artifact_missing_falls_back(self, tmp_path, files) -> None:
        s = FileStore(tmp_path / "h")
        save(s, files["a"], 0, "main")
        doc = run_with({NAME: files["slow"]}, seed=1)
        doc["datetime"] = (T0 + timedelta(hours=1)).isoformat()
        s.save(doc)  # saved without its artifact
        (c,) = gate(s, tmp_path, Fake()).comparisons
        assert c.why == f"artifact missing: the candidate's artifact is not in {s.location}"


class TestCommand:
    @pytest.fixture
    def fake(self, monkeypatch) -> Fake:
        fake = Fake()
        monkeypatch.setattr(history_gate, "rebaseline", fake.rebaseline)
        return fake

    def test_paired_regression_exits_1_with_lines_and_summary(
        self, tmp_path, files, fake, capsys, monkeypatch
    ):
        s = FileStore(tmp_path / "h")
        save(s, files["a"], 0, "main")
        save(s, files["slow"], 1, None)
        summary = tmp_path / "summary.md"
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
        assert main(["gate", "--history", str(tmp_path / "h")]) == 1
        out = capsys.readouterr().out
        assert f"{NAME} (paired in this job): regression: candidate/baseline 1.300" in out
        assert f"detbench gate: regression in {NAME}" in out
        text = summary.read_text()
        assert text.startswith("### detbench gate (`--history`)")
        assert "| paired in this job | **regression** | 1.300 (+30.0%) |" in text

    def test_identical_passes_and_no_rebaseline_is_unpaired(self, tmp_path, files, fake, capsys) -> None:
        s = FileStore(tmp_path / "h")
        save(s, files["a"], 0, "main")
        save(s, files["b"], 1, None)
        assert main(["gate", "--history", str(tmp_path / "h")]) == 0
        out = capsys.readouterr().out
        assert f"{NAME} (paired in this job): no regression" in out and "detbench gate: no regression" in out
        assert main(["gate", "--history", str(tmp_path / "h"), "--no-rebaseline"]) == 0
        out = capsys.readouterr().out
        assert f"{NAME} (unpaired across sessions; why: --no-rebaseline): no change" in out

    def test_json_counts_paired_regressions(self, tmp_path, files, fake, capsys) -> None:
        import json

        s = FileStore(tmp_path / "h")
        save(s, files["a"], 0, "main")
        save(s, files["slow"], 1, None)
        assert main(["gate", "--json", "--history", str(tmp_path / "h")]) == 1
        doc = json.loads(capsys.readouterr().out)
        assert doc["regression"] is True and doc["verdicts"] == []
        (c,) = doc["settings"]["comparisons"]
        assert c["paired"]["outcome"] == REGRESSION and c["why"] == ""
