"""Tests of the latency gate CLI on pytest-benchmark-shaped files, and of the timing helpers behind ``ab``."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pytest_benchmark.stats import Stats

from detbench.cli.gate import add_arguments, run_files
from detbench.errors import HistoryError
from detbench.perf.gate import (
    GateVerdicts,
    ab,
    format_table,
    gate,
    load_benchmark_json,
    percentile_extra_info,
    verdicts_to_json,
)
from detbench.perf.stats import Verdict
from detbench.perf.timing import BlockPlan, Slowed, measure
from detbench.schema import problems

MS = 1e-3
FULLNAME = "tests/benchmarks/test_latency.py::test_latency[{}]"


def samples(median_ms: float, n: int = 30, seed: int = 0, sigma: float = 0.05) -> list[float]:
    return list(median_ms * MS * np.random.default_rng(seed).lognormal(0.0, sigma, n))


def bench_entry(name: str, data: list[float], *, save_data: bool = True) -> dict:
    """One entry of ``benchmarks`` as pytest-benchmark 5.x writes it."""
    stats = {
        "min": min(data),
        "max": max(data),
        "mean": statistics.mean(data),
        "stddev": statistics.stdev(data),
        "rounds": len(data),
        "median": statistics.median(data),
        "iqr": 0.0,
        "q1": min(data),
        "q3": max(data),
        "iqr_outliers": 0,
        "stddev_outliers": 0,
        "outliers": "0;0",
        "ld15iqr": min(data),
        "hd15iqr": max(data),
        "ops": 1 / statistics.mean(data),
        "total": sum(data),
        "iterations": 1,
    }
    if save_data:
        stats["data"] = data
    return {
        "group": "latency",
        "name": f"test_latency[{name}]",
        "fullname": FULLNAME.format(name),
        "params": {"backend": name},
        "param": name,
        "extra_info": {},
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "warmup": False},
        "stats": stats,
    }


def write_run(path: Path, runs: dict[str, list[float]], *, save_data: bool = True) -> Path:
    """A saved pytest-benchmark run holding one benchmark per entry of ``runs``."""
    doc = {
        "machine_info": {
            "node": "ci",
            "processor": "x86_64",
            "python_version": "3.11.9",
            "cpu": {"count": 2},
        },
        "commit_info": {"id": "0" * 40, "dirty": False, "branch": "main"},
        "benchmarks": [bench_entry(name, data, save_data=save_data) for name, data in runs.items()],
        "datetime": "2025-01-01T00:00:00.000000+00:00",
        "version": "5.1.0",
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def cli(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="detbench gate")
    add_arguments(parser)
    return run_files(parser.parse_args([str(a) for a in argv]))


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write_run(
        tmp_path / "0001_base.json", {"onnx": samples(2.0, seed=1), "torchscript": samples(3.0, seed=2)}
    )


class TestGateCli:
    def test_regression_exits_1(self, tmp_path, base, capsys):
        """A 30% slower onnx benchmark exits 1 and its table row says regression."""
        cand = write_run(
            tmp_path / "c.json", {"onnx": samples(2.6, seed=3), "torchscript": samples(3.0, seed=4)}
        )
        assert cli(base, cand) == 1
        rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
        assert rows[FULLNAME.format("onnx")].endswith("regression")
        assert rows[FULLNAME.format("torchscript")].endswith("no change")

    def test_a_a_exits_0(self, tmp_path, base, capsys):
        """A fresh draw from the same distributions exits 0 with no regression in the table."""
        cand = write_run(
            tmp_path / "c.json", {"onnx": samples(2.0, seed=5), "torchscript": samples(3.0, seed=6)}
        )
        assert cli(base, cand) == 0
        assert "regression" not in capsys.readouterr().out

    def test_min_effect_flag_is_used(self, tmp_path, base):
        """With --min-effect 0.5 a 30% slowdown is no longer a regression."""
        cand = write_run(
            tmp_path / "c.json", {"onnx": samples(2.6, seed=3), "torchscript": samples(3.0, seed=4)}
        )
        assert cli(base, cand, "--min-effect", "0.5") == 0
        assert cli(base, cand, "--min-samples", "31") == 0

    def test_json_output_parses(self, tmp_path, base, capsys):
        """--json prints strict JSON with settings, counts and one verdict per benchmark, every key
        as perf.gate.GateVerdicts types it."""
        cand = write_run(
            tmp_path / "c.json", {"onnx": samples(2.6, seed=3), "openvino": samples(1.0, seed=7)}
        )
        assert cli(base, cand, "--json", "--alpha", "0.05") == 1
        doc = json.loads(capsys.readouterr().out)
        assert problems(doc, GateVerdicts) == []
        assert doc["settings"]["alpha"] == 0.05
        assert doc["settings"]["candidate"] == str(cand)
        assert doc["regression"] is True
        by_name = {v["name"]: v for v in doc["verdicts"]}
        assert by_name[FULLNAME.format("onnx")]["status"] == "regression"
        assert by_name[FULLNAME.format("openvino")]["n_base"] == 0
        assert by_name[FULLNAME.format("openvino")]["change"] is None
        assert doc["counts"] == {"missing": 2, "regression": 1}

    def test_missing_benchmarks_are_listed(self, tmp_path, base, capsys):
        """A benchmark in only one run appears in the table as missing, with its row count on one side."""
        cand = write_run(tmp_path / "c.json", {"onnx": samples(2.0, seed=5)})
        assert cli(base, cand) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if "torchscript" in line)
        assert row.split()[1] == "30/0"
        assert row.endswith("missing")

    @pytest.mark.parametrize(
        ("flag", "value"), [("--alpha", "1.5"), ("--min-effect", "-1"), ("--min-samples", "1")]
    )
    def test_rejects_bad_settings(self, base, flag, value, capsys):
        """Out-of-range settings are usage errors naming the flag."""
        with pytest.raises(SystemExit):
            cli(base, base, flag, value)
        assert flag in capsys.readouterr().err


class TestLoadBenchmarkJson:
    def test_keys_by_fullname_with_raw_seconds(self, base):
        """Samples come back per fullname, exactly as saved."""
        runs = load_benchmark_json(base)
        assert set(runs) == {FULLNAME.format("onnx"), FULLNAME.format("torchscript")}
        np.testing.assert_array_equal(runs[FULLNAME.format("onnx")], samples(2.0, seed=1))

    def test_falls_back_to_name(self, tmp_path):
        """An entry without fullname is keyed by its name."""
        path = write_run(tmp_path / "r.json", {"onnx": samples(2.0)})
        doc = json.loads(path.read_text())
        del doc["benchmarks"][0]["fullname"]
        path.write_text(json.dumps(doc))
        assert list(load_benchmark_json(path)) == ["test_latency[onnx]"]

    @pytest.mark.parametrize(
        ("content", "match"),
        [
            ("", "empty"),
            ("{not json", "not valid JSON"),
            ('{"machine_info": {}}', "no 'benchmarks'"),
            ("[1, 2]", "no 'benchmarks'"),
            ('{"benchmarks": []}', "no benchmarks"),
            ('{"benchmarks": [{"name": "x", "stats": {"data": []}}]}', "--benchmark-save-data"),
            ('{"benchmarks": [{"name": "x", "stats": {"data": [1e-3, "fast"]}}]}', "seconds"),
            ('{"benchmarks": [{"name": "x", "stats": {"data": [1e-3, NaN]}}]}', "finite"),
        ],
    )
    def test_unreadable_runs_raise_history_error(self, tmp_path, content, match):
        """Every unusable file raises HistoryError naming the file and the problem."""
        path = tmp_path / "broken.json"
        path.write_text(content)
        with pytest.raises(HistoryError, match=match) as info:
            load_benchmark_json(path)
        assert info.value.path == path
        assert str(path) in str(info.value)

    def test_saved_without_data_says_how_to_fix(self, tmp_path, base):
        """A run saved without raw data is refused, via the CLI too, with the flag that fixes it."""
        cand = write_run(tmp_path / "nodata.json", {"onnx": samples(2.0)}, save_data=False)
        with pytest.raises(
            HistoryError, match=r"without raw timings; rerun with --benchmark-save-data"
        ) as info:
            cli(base, cand)
        assert info.value.path == cand

    def test_missing_file(self, tmp_path):
        """A path that does not exist raises HistoryError naming it."""
        with pytest.raises(HistoryError, match="no such file") as info:
            gate(tmp_path / "nope.json", tmp_path / "nope2.json")
        assert info.value.path == tmp_path / "nope.json"

    def test_duplicate_names_are_refused(self, tmp_path):
        """Two entries with one fullname make the run ambiguous."""
        path = write_run(tmp_path / "r.json", {"onnx": samples(2.0)})
        doc = json.loads(path.read_text())
        doc["benchmarks"].append(doc["benchmarks"][0])
        path.write_text(json.dumps(doc))
        with pytest.raises(HistoryError, match="twice"):
            load_benchmark_json(path)


class TestReporting:
    def test_table_is_aligned(self, tmp_path, base):
        """Every row of the table is as wide as the header's rule, and the header names each column."""
        cand = write_run(tmp_path / "c.json", {"onnx": samples(2.6, seed=3)})
        lines = format_table(gate(base, cand)).splitlines()
        header, rule = lines[0], lines[1]
        for column in ("name", "base ms", "cand ms", "change %", "95% CI", "p", "status"):
            assert column in header
        assert len(lines) == 4
        # Status is the last, left-aligned column: every status starts where the header's does.
        start = header.index("status")
        assert all(
            line[start:].split()[0] in {"regression", "missing", "status"} for line in lines if line != rule
        )

    def test_json_has_no_nan(self):
        """NaN fields (missing benchmarks) become null so strict JSON parsers accept the file."""
        nan = float("nan")
        v = Verdict("x", 5, 0, 1e-3, nan, nan, nan, nan, nan, "missing")
        doc = json.loads(verdicts_to_json([v], {"alpha": 0.01}))
        assert doc["verdicts"][0]["median_cand"] is None
        assert doc["regression"] is False


class TestPercentileExtraInfo:
    def test_reads_raw_rounds_in_ms(self):
        """p50/p90/p99 come from the fixture's raw rounds, converted to milliseconds."""
        stats = Stats()
        for s in samples(2.0, n=50):
            stats.update(s)
        info = percentile_extra_info(SimpleNamespace(disabled=False, stats=SimpleNamespace(stats=stats)))
        assert set(info) == {"p50_ms", "p90_ms", "p99_ms"}
        assert info["p50_ms"] == pytest.approx(np.median(stats.data) * 1e3)
        assert info["p50_ms"] <= info["p90_ms"] <= info["p99_ms"]

    @pytest.mark.parametrize(
        "fixture",
        [
            SimpleNamespace(disabled=True, stats=None),
            SimpleNamespace(disabled=False, stats=None),
            SimpleNamespace(disabled=False, stats=SimpleNamespace(stats=Stats())),
        ],
    )
    def test_empty_without_data(self, fixture):
        """A disabled or not-yet-run fixture gives no extra info rather than an error."""
        assert percentile_extra_info(fixture) == {}


def spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


class TestTiming:
    def test_measure_returns_seconds_per_round(self):
        """measure calls warmup + rounds times and returns one positive duration per round."""
        calls = []
        out = measure(lambda: calls.append(spin(1e-4)), rounds=7, warmup=2)
        assert len(calls) == 9
        assert out.shape == (7,)
        assert np.all(out >= 1e-4)
        assert np.all(out < 1.0)

    def test_slowed_busy_waits_in_proportion(self):
        """Slowed(fn, 1) returns fn's result, takes twice as long, and burns CPU rather than sleeping."""
        slowed = Slowed(lambda x: (time.sleep(0.01), x)[1], 1.0)
        wall, cpu = time.perf_counter(), time.process_time()
        assert slowed(42) == 42
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert wall >= 0.02
        assert cpu >= 0.002  # a sleep uses ~0 CPU; the 10 ms busy-wait uses most of it even when shared

    def test_slowed_rejects_negative_factor(self):
        """A negative factor is an error naming it."""
        with pytest.raises(ValueError, match="factor"):
            Slowed(print, -0.5)

    def test_ab_flags_a_big_slowdown(self):
        """ab of a 0.2 ms spin against a 4x slowed copy is a regression named as asked."""
        work = lambda: spin(2e-4)  # noqa: E731
        v = ab(work, Slowed(work, 3.0), plan=BlockPlan(10, 5, 2), name="spin")
        assert (v.name, v.status, v.n_base, v.paired) == ("spin", "regression", 10, True)
        assert v.change > 1.5
