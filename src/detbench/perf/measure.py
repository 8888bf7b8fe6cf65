"""Measuring loaded backends: latency and throughput in alternated blocks, the per-image pipeline's
stages, first calls in fresh processes, and the latency budgets that hold on this machine.

Each function takes loaded backends (``runtimes``) and returns plain results; nothing here renders or
judges: ``report`` sequences these steps, ``report.verdict`` judges and ``report.render`` shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detbench.perf.stats import BudgetResult
from detbench.perf.timing import BlockPlan

if TYPE_CHECKING:
    from detbench.perf.budgets import Budgets, LatencyBudget
    from detbench.perf.pipeline_timing import StagePlan
    from detbench.runtimes.pipeline import StageCalls


def batch_of(x: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(x, (n, *x.shape[1:])))  # tiles the images if fewer than n


@dataclass
class LatencyResult:
    samples: dict[str, np.ndarray]  # seconds per call
    batch: dict[str, int]
    plan: BlockPlan
    notes: list[str]


def measure_latency(
    loaded: Mapping[str, Any],
    x1: np.ndarray,
    calls: int,
    on_plan: Callable[[int], None],
    advance: Callable[[int], None],
) -> LatencyResult:
    """Every backend's steady state at batch 1 (a fixed-batch artifact gets its own batch)."""
    inputs = {
        n: x1 if b.dynamic_batch or b.spec.batch == 1 else batch_of(x1, b.spec.batch)
        for n, b in loaded.items()
    }
    notes = [
        f"{n}: the artifact has a fixed batch of {len(x)}; its latency is per call of "
        f"{len(x)} images and its speedup per image"
        for n, x in inputs.items()
        if len(x) != 1
    ]
    plan = BlockPlan.REPORT if calls == BlockPlan.REPORT.kept else BlockPlan.covering(calls)
    names = list(loaded)
    on_plan(len(names) * plan.kept)
    fns = [lambda b=loaded[n], x=inputs[n]: b.run(x) for n in names]
    samples = plan.steady_state(fns, on_block=advance)
    return LatencyResult(dict(zip(names, samples)), {n: len(inputs[n]) for n in names}, plan, notes)


def measure_throughput(
    loaded: Mapping[str, Any],
    x: np.ndarray,
    batch: int,
    calls: int,
    on_plan: Callable[[int], None],
    advance: Callable[[int], None],
) -> dict[str, dict[str, Any]]:
    """Images/s at ``batch`` for the backends that take any batch; the others get the reason."""
    dyn = [n for n in loaded if loaded[n].dynamic_batch]
    xn = batch_of(x, batch)
    tp: dict[str, np.ndarray] = {}
    if dyn:
        plan = BlockPlan.covering(calls)
        on_plan(len(dyn) * plan.kept)
        fns = [lambda b=loaded[n]: b.run(xn) for n in dyn]
        samples = plan.steady_state(fns, on_block=advance)
        tp = dict(zip(dyn, samples))
    out = {}
    for n, backend in loaded.items():
        if n in tp:
            med = float(np.median(tp[n]))
            out[n] = {
                "batch": batch,
                "rounds": int(tp[n].size),
                "images_per_s": batch / med,
                "p50_ms": med * 1e3,
                "reason": None,
            }
        else:
            out[n] = {
                "batch": batch,
                "rounds": 0,
                "images_per_s": None,
                "p50_ms": None,
                "reason": f"artifact has a fixed batch of {backend.spec.batch}; "
                "export it with a dynamic batch to measure throughput",
            }
    return out


def measure_first_calls(
    loaded: Mapping[str, Any], imgsz: int, threads: int, advance: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Cold start (load + first inference) and peak RSS of each backend, each in a fresh process."""
    from detbench.perf.firstcall import first_call

    out = {}
    for name, backend in loaded.items():
        try:
            fc = first_call(name, backend.artifact, threads=threads, imgsz=imgsz)
            out[name] = {**fc.to_dict(), "reason": None}
        except (OSError, RuntimeError, ValueError) as exc:
            out[name] = {"first_call_ms": None, "peak_rss_mb": None, "base_rss_mb": None, "reason": str(exc)}
        advance(name)
    return out


def measure_stages(
    loaded: Mapping[str, Any],
    images: Sequence[Path],
    imgsz: int,
    names: Any,
    *,
    plan: StagePlan | None = None,
    pipeline: StageCalls | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-image medians of decode, preprocess, inference and postprocess (NMS) with class ``names``,
    and end to end, over ``images`` one at a time as a deployment runs them, at steady state
    (``pipeline_timing.pipeline_stages``: a cold first pass kept apart, then ``plan``'s warm passes
    alternated between backends). ``pipeline``: each stage's reference variant unless given
    (``runtimes.pipeline.stage_calls``), whose postprocess is NMS for a raw head and none for a backend
    whose output is end2end detections."""
    if pipeline is None:
        by_backend = reference_calls(loaded, imgsz, names)
    else:
        by_backend = dict.fromkeys(loaded, pipeline)
    return measure_pipelines(loaded, images, {"": by_backend}, plan=plan)[""]


def reference_calls(loaded: Mapping[str, Any], imgsz: int, names: Any) -> dict[str, StageCalls]:
    """Each stage's reference variant for each backend (``runtimes.pipeline.stage_calls``), made once
    per kind of output: NMS after a raw head, the end2end postprocess after end2end detections."""
    from detbench.runtimes.end2end import is_end2end
    from detbench.runtimes.pipeline import stage_calls

    made: dict[bool, StageCalls] = {}
    out = {}
    for n, b in loaded.items():
        e2e = is_end2end(b)
        if e2e not in made:
            made[e2e] = stage_calls(imgsz, names, end2end=e2e)
        out[n] = made[e2e]
    return out


def measure_pipelines(
    loaded: Mapping[str, Any],
    images: Sequence[Path],
    pipelines: Mapping[str, Mapping[str, StageCalls]],
    *,
    plan: StagePlan | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``measure_stages`` of several pipelines in one ``pipeline_stages`` run: ``pipelines`` maps a
    label to the pipeline it runs on each backend named (a backend left out is not run under that
    label). Each backend's pipelines are adjacent entries of the run, so their blocks alternate side by
    side (A·1 A·2 B·1 B·2 B·2 B·1 A·2 A·1 ...) and their ratio sees the same load. Returns ``{label:
    {backend: row}}`` with measure_stages' rows; a fixed-batch backend's row gives its reason."""
    from detbench.perf.pipeline_timing import StagePlan, pipeline_stages

    plan = plan or StagePlan.REPORT
    per_image = {n for n, b in loaded.items() if b.dynamic_batch or b.spec.batch == 1}
    keys = [(n, label) for n in loaded if n in per_image for label in pipelines if n in pipelines[label]]
    runs = {k: loaded[k[0]].run for k in keys}
    calls = {k: pipelines[k[1]][k[0]] for k in keys}
    timed = pipeline_stages(runs, calls, images, plan, clock=clock) if runs and images else {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for label, by_backend in pipelines.items():
        rows = out[label] = {}
        for name, backend in loaded.items():
            if name not in by_backend:
                continue
            if (name, label) in timed:
                rows[name] = {
                    "images": len(images),
                    "warm_passes": plan.warm_passes,
                    **timed[name, label].summary(),
                    "reason": None,
                }
            elif name in per_image:
                rows[name] = {"images": 0, "reason": "no images to time"}
            else:
                rows[name] = {
                    "images": 0,
                    "reason": f"fixed batch of {backend.spec.batch}: no per-image pipeline",
                }
    return out


@dataclass(frozen=True)
class MeasuredBudget:
    """One latency budget measured on this machine: the budget at its machine's bound, and the result."""

    budget: LatencyBudget
    result: BudgetResult


def _paired_medians(lat: LatencyResult | None, names: Sequence[str]) -> list[np.ndarray] | None:
    """Block medians of ``names`` from an alternated run planned as a budget's own run would be
    (``BlockPlan.BUDGETS``, batch 1), or None when that run cannot stand in for the budget's."""
    from detbench.perf.timing import block_medians

    if lat is None or lat.plan != BlockPlan.BUDGETS:
        return None
    if any(n not in lat.samples or lat.batch[n] != 1 for n in names):
        return None
    return [block_medians(lat.samples[n], lat.plan.blocks) for n in names]


def measure_latency_budgets(
    budgets: Budgets,
    runners: Mapping[str, Callable[[], object]],
    flags: set[str],
    *,
    measured: LatencyResult | None = None,
) -> tuple[list[MeasuredBudget], list[str]]:
    """Measure each latency budget whose two backends are in ``runners`` at the bound that holds on
    this machine (``Budgets.latency_for``); plus notes on the budgets not measured and why. A ratio
    is judged on the block medians of ``measured`` when that run used the budgets' plan (its blocks
    alternate both backends just as the budget's own run would), else in its own alternated-block
    run (``budgets.measure_latency``)."""
    from detbench.perf.budgets import check_latency
    from detbench.perf.budgets import measure_latency as measure_ratio
    from detbench.perf.machine import machine_id

    results, notes = [], []
    for b in budgets.latency_for(machine_id()):
        if b.numerator not in runners or b.denominator not in runners:
            continue
        if b.batch != 1:
            notes.append(f"latency budget {b.name!r}: batch {b.batch} is not measured by the report")
            continue
        if not b.applies_to(flags):
            notes.append(
                f"latency budget {b.name!r} applies only with CPU flags {', '.join(b.cpu_flags_any)}"
            )
            continue
        pair = _paired_medians(measured, (b.numerator, b.denominator))
        if pair is not None:
            r = check_latency(b, *pair, paired=True)
        else:
            r, _, _ = measure_ratio(b, runners[b.numerator], runners[b.denominator])
        results.append(MeasuredBudget(b, r))
    return results, notes
