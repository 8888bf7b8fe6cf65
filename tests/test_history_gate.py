"""`detbench gate --history`: a new run against the history of its machine class (file and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from _support.runs import benchmark_run
from detbench.cli import main
from detbench.history import store
from detbench.perf.gate import GateVerdicts
from detbench.schema import problems

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NAME = "t.py::test_latency[onnxruntime]"


def fill(target: store.Store, medians: list[float], *, threads: list[int] | None = None, **kw) -> list[str]:
    ids = []
    for i, ms in enumerate(medians):
        doc = benchmark_run(
            {NAME: ms},
            seed=i,
            threads=(threads or [1] * len(medians))[i],
            created=T0 + timedelta(hours=i),
            **kw,
        )
        ids.append(target.save(doc, tag=f"v{i}"))
    return ids


def gate_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["gate", "--json", *argv])
    doc = json.loads(capsys.readouterr().out)
    assert problems(doc, GateVerdicts) == []  # every key as perf.gate.GateVerdicts types it
    return code, doc


@pytest.fixture(params=["files", "postgres"])
def target(request, tmp_path) -> str:
    if request.param == "files":
        return str(tmp_path / "history")
    return request.getfixturevalue("postgres_url")


@pytest.fixture(autouse=True)
def this_machine(monkeypatch):
    monkeypatch.setenv("DETBENCH_MACHINE_ID", "testmachine0")


def test_slower_new_run_is_a_regression(target, capsys):
    with store.open_store(target) as s:
        ids = fill(s, [5.0, 5.0, 5.0, 6.5])  # +30% on the newest run
    code, doc = gate_json(capsys, "--history", target, "--last", "2")
    assert code == 1
    (v,) = doc["verdicts"]
    assert v["status"] == "regression" and v["n_base"] == 60 and v["n_cand"] == 30
    assert doc["settings"]["candidate"] == ids[3] and doc["settings"]["baseline_runs"][NAME] == ids[1:3][::-1]


def test_same_speed_passes_and_named_baseline(target, capsys):
    with store.open_store(target) as s:
        fill(s, [7.0, 5.0, 5.0, 5.0])
    code, doc = gate_json(capsys, "--history", target, "--last", "2")
    assert code == 0 and doc["verdicts"][0]["status"] == "no change"
    code, doc = gate_json(capsys, "--history", target, "--baseline", "v0")  # the slow "release"
    assert code == 0 and doc["verdicts"][0]["status"] == "improvement"


def test_other_machine_class_and_configuration_are_not_baselines(target, capsys):
    with store.open_store(target) as s:
        fill(s, [3.0], machine_id="othermachine")  # a faster CPU class: must not be compared with
        fill(s, [5.0, 5.0], threads=[2, 1])  # threads=2 first, then the candidate with threads=1
    code, doc = gate_json(capsys, "--history", target)
    assert code == 0 and doc["verdicts"][0]["status"] == "missing"
    code, doc = gate_json(capsys, "--history", target, "--vary", "threads")
    assert doc["verdicts"][0]["status"] == "no change" and doc["verdicts"][0]["n_base"] == 30


def test_corrupt_history_fails_the_gate(postgres_url, capsys):
    import psycopg

    with store.open_store(postgres_url) as s:
        ids = fill(s, [5.0, 5.0, 5.0])
    with psycopg.connect(postgres_url) as conn:
        conn.execute("UPDATE detbench_benchmarks SET samples[3] = 0.5 WHERE run_id = %s", (int(ids[0]),))
    code = main(["gate", "--history", postgres_url])
    captured = capsys.readouterr()
    assert code == 1 and f"run {ids[0]}" in captured.err and "checksum" in captured.err


def test_empty_history_is_one_line(tmp_path, capsys):
    (tmp_path / "h").mkdir()
    code = main(["gate", "--history", str(tmp_path / "h")])
    err = capsys.readouterr().err
    assert code == 1 and "no run of this machine class" in err and err.count("\n") == 1
