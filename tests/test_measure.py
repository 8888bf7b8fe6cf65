"""The measuring steps on stand-in backends: plans, batches, reasons and skipped budgets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from detbench.perf.budgets import Budgets, LatencyBudget
from detbench.perf.measure import LatencyResult, measure_latency, measure_latency_budgets, measure_throughput
from detbench.perf.timing import BlockPlan


class _Backend:
    """Returns its input's batch size; ``batch`` None takes any batch."""

    def __init__(self, batch: int | None) -> None:
        self.dynamic_batch = batch is None
        self.spec = SimpleNamespace(batch=batch or 1)
        self.seen: set[int] = set()

    def run(self, x: np.ndarray) -> int:
        self.seen.add(len(x))
        return len(x)


def _loaded() -> dict[str, _Backend]:
    return {"pytorch": _Backend(None), "fixed": _Backend(4)}


def test_latency_runs_the_covering_plan_and_each_artifacts_batch() -> None:
    """Latency keeps the report plan's calls per backend; a fixed-batch artifact runs its own batch, noted."""
    loaded, totals, blocks = _loaded(), [], []
    lat = measure_latency(loaded, np.zeros((1, 3, 8, 8), np.float32), 30, totals.append, blocks.append)
    assert lat.plan == BlockPlan.covering(30)
    assert totals == [2 * lat.plan.kept] and sum(blocks) == totals[0]
    assert {n: s.size for n, s in lat.samples.items()} == {"pytorch": lat.plan.kept, "fixed": lat.plan.kept}
    assert lat.batch == {"pytorch": 1, "fixed": 4} and loaded["fixed"].seen == {4}
    assert len(lat.notes) == 1 and lat.notes[0].startswith("fixed: the artifact has a fixed batch of 4")


def test_throughput_times_dynamic_backends_and_gives_the_others_a_reason() -> None:
    """Only backends that take any batch are timed at ``batch``; the fixed one gets rounds 0 and why."""
    loaded = _loaded()
    out = measure_throughput(
        loaded, np.zeros((1, 3, 8, 8), np.float32), 3, 10, lambda _t: None, lambda _k: None
    )
    assert out["pytorch"]["rounds"] == BlockPlan.covering(10).kept and out["pytorch"]["images_per_s"] > 0
    assert loaded["pytorch"].seen == {3} and not loaded["fixed"].seen
    assert out["fixed"]["images_per_s"] is None and "fixed batch of 4" in out["fixed"]["reason"]


def test_latency_budgets_skip_what_the_report_does_not_measure() -> None:
    """Budgets at batch 8, for absent CPU flags or absent backends are not measured; two of them noted."""
    budgets = Budgets(
        Path("budgets.toml"),
        latency=(
            LatencyBudget("batched", "onnxruntime", "pytorch", 1.1, batch=8),
            LatencyBudget("vnni", "onnxruntime", "pytorch", 1.1, cpu_flags_any=("avx512_vnni",)),
            LatencyBudget("absent", "openvino", "pytorch", 1.1),
        ),
    )
    measured, notes = measure_latency_budgets(
        budgets, {"onnxruntime": lambda: None, "pytorch": lambda: None}, set()
    )
    assert measured == []
    assert ["batch 8" in notes[0], "avx512_vnni" in notes[1], len(notes)] == [True, True, 2]


def test_default_report_rounds_run_the_budgets_plan() -> None:
    """At the report's default 160 rounds latency runs the budgets' plan (so budgets can reuse it)."""
    lat = measure_latency(
        _loaded(), np.zeros((1, 3, 8, 8), np.float32), 160, lambda _t: None, lambda _k: None
    )
    assert lat.plan == BlockPlan.REPORT == BlockPlan.BUDGETS


def _run_of(plan: BlockPlan, slow: float) -> LatencyResult:
    """A latency run whose onnxruntime calls take ``slow`` x pytorch's, block for block."""
    rng = np.random.default_rng(0)
    base = 0.01 * rng.lognormal(0.0, 0.02, plan.kept)
    return LatencyResult(
        {"pytorch": base, "onnxruntime": base * slow}, {"pytorch": 1, "onnxruntime": 1}, plan, []
    )


def _never() -> None:
    raise AssertionError("the budget ran a measurement of its own")


def test_latency_budget_is_judged_on_the_reports_run_when_it_ran_the_budgets_plan() -> None:
    """No second run: the ratio of the report's paired blocks passes at 0.9x and fails at 1.3x."""
    budgets = Budgets(Path("budgets.toml"), latency=(LatencyBudget("ort", "onnxruntime", "pytorch", 1.1),))
    runners = {"onnxruntime": _never, "pytorch": _never}
    for slow, passed in ((0.9, True), (1.3, False)):
        measured, _ = measure_latency_budgets(
            budgets, runners, set(), measured=_run_of(BlockPlan.BUDGETS, slow)
        )
        assert [m.result.passed for m in measured] == [passed]
        assert measured[0].result.ratio == pytest.approx(slow, rel=0.01)


def test_latency_budget_runs_its_own_plan_after_another_plan() -> None:
    """A report run on another plan (e.g. --quick's) cannot stand in: the budget times both itself."""
    budgets = Budgets(Path("budgets.toml"), latency=(LatencyBudget("ort", "onnxruntime", "pytorch", 1.1),))
    calls = {"onnxruntime": 0, "pytorch": 0}

    def runner(name: str):
        return lambda: calls.__setitem__(name, calls[name] + 1)

    other = BlockPlan.covering(40)
    measured, _ = measure_latency_budgets(
        budgets, {n: runner(n) for n in calls}, set(), measured=_run_of(other, 0.9)
    )
    assert len(measured) == 1
    assert calls["pytorch"] >= BlockPlan.BUDGETS.blocks * BlockPlan.BUDGETS.block_calls
