"""The latency gate: compare two saved pytest-benchmark runs (``detbench gate``) or two callables (``ab``).

Usage: ``detbench gate BASELINE.json CANDIDATE.json [--alpha A] [--min-effect E] [--min-samples N] [--json]``
(its options: detbench.cli.gate). It prints ``format_table`` (or, with ``--json``, ``verdicts_to_json``)
and exits 1 when any benchmark regressed, else 0. Unreadable runs raise HistoryError; the CLI shows it
as one line.

Both runs must carry raw per-round timings: save them with ``--benchmark-save-data`` (or write them
with ``--benchmark-json``, which always includes them). Summary statistics alone cannot give a
significance test, so such files are refused rather than skipped (detbench.history.benchjson reads them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detbench.errors import HistoryError
from detbench.history import benchjson
from detbench.jsonsafe import dumps
from detbench.perf.stats import (
    CI_CONFIDENCE,
    GATE_ALPHA,
    PAIRED_MIN_EFFECT,
    UNPAIRED_MIN_EFFECT,
    Verdict,
    compare_paired,
    compare_samples,
    percentiles,
)
from detbench.perf.timing import BlockPlan, block_medians
from detbench.schema import doc


def load_benchmark_json(path: Path | str) -> dict[str, np.ndarray]:
    """Per-round seconds of each benchmark in a saved pytest-benchmark run, keyed by fullname (or name)."""
    path = Path(path)
    runs: dict[str, np.ndarray] = {}
    for bench in benchjson.load(path).benchmarks:
        if bench.fullname in runs:
            raise HistoryError(path, f"benchmark {bench.fullname!r} appears twice; the run is ambiguous")
        runs[bench.fullname] = np.asarray(bench.samples, dtype=np.float64)
    return runs


def _missing(name: str, base: np.ndarray | None, cand: np.ndarray | None) -> Verdict:
    nan = float("nan")
    return Verdict(
        name=name,
        n_base=0 if base is None else int(base.size),
        n_cand=0 if cand is None else int(cand.size),
        median_base=nan if base is None else float(np.median(base)),
        median_cand=nan if cand is None else float(np.median(cand)),
        change=nan,
        ci_low=nan,
        ci_high=nan,
        p_value=nan,
        status="missing",
    )


def compare_runs(
    base: Mapping[str, np.ndarray],
    cand: Mapping[str, np.ndarray],
    *,
    alpha: float = GATE_ALPHA,
    min_effect: float = UNPAIRED_MIN_EFFECT,
    min_samples: int = 9,
) -> list[Verdict]:
    """One unpaired Verdict per benchmark name, sorted; a name in only one run gets status "missing"."""
    verdicts = []
    for name in sorted(base.keys() | cand.keys()):
        if name in base and name in cand:
            verdicts.append(
                compare_samples(
                    name, base[name], cand[name], alpha=alpha, min_effect=min_effect, min_samples=min_samples
                )
            )
        else:
            verdicts.append(_missing(name, base.get(name), cand.get(name)))
    return verdicts


def gate(
    base_path: Path | str,
    cand_path: Path | str,
    *,
    alpha: float = GATE_ALPHA,
    min_effect: float = UNPAIRED_MIN_EFFECT,
    min_samples: int = 9,
) -> list[Verdict]:
    """One Verdict per benchmark, sorted by name; a benchmark in only one run gets status "missing".

    Two saved runs are two sessions: unpaired statistics (Mann-Whitney, independent bootstrap).
    """
    return compare_runs(
        load_benchmark_json(base_path),
        load_benchmark_json(cand_path),
        alpha=alpha,
        min_effect=min_effect,
        min_samples=min_samples,
    )


def compare_benchmark_session(
    session: object,
    *,
    alpha: float = GATE_ALPHA,
    min_effect: float = UNPAIRED_MIN_EFFECT,
    exclude: Collection[str] = (),
) -> tuple[list[Verdict], list[str]]:
    """The gate on a pytest-benchmark session: this run's rounds against each run it was compared with.

    ``session`` is pytest-benchmark's ``BenchmarkSession`` after its ``finish()``: its ``benchmarks``
    hold this run's raw rounds and ``compared_mapping`` the ``--benchmark-compare`` runs as loaded
    from disk. Returns the verdicts (benchmarks present on both sides only) and problems, one line
    each (no compared run; a compared run saved without ``--benchmark-save-data``). Benchmarks named in
    ``exclude`` (judged another way: re-baselined in this job) are left out, and need no raw timings.
    """
    compared = getattr(session, "compared_mapping", None) or {}
    if not compared:
        return [], ["no compared run: pass --benchmark-compare[=NUM] with --detbench-compare-fail"]
    now: dict[str, np.ndarray] = {}
    for bench in getattr(session, "benchmarks", []):  # pytest-benchmark Metadata: .fullname, .stats.data
        data = getattr(getattr(bench, "stats", None), "data", None)
        if bench and data and bench.fullname not in exclude:
            now[bench.fullname] = np.asarray(data, dtype=np.float64)
    verdicts, problems = [], []
    for path, mapping in compared.items():
        old: dict[str, np.ndarray] = {}
        for name, entry in mapping.items():
            data = benchjson.raw_rounds(entry)
            if name in now and not data:
                problems.append(
                    f"{path}: benchmark {name!r} was saved without raw timings; {benchjson.SAVE_HINT}"
                )
            elif data:
                old[name] = np.asarray(data, dtype=np.float64)
        verdicts += compare_runs(
            {k: v for k, v in old.items() if k in now},
            {k: now[k] for k in old if k in now},
            alpha=alpha,
            min_effect=min_effect,
        )
    return verdicts, problems


def ab(
    run_a: Callable[[], object],
    run_b: Callable[[], object],
    *,
    plan: BlockPlan = BlockPlan.GATE,
    name: str = "b vs a",
    alpha: float = GATE_ALPHA,
    min_effect: float = PAIRED_MIN_EFFECT,
    min_samples: int = 8,
    seed: int = 0,
) -> Verdict:
    """Time a and b in alternated blocks (steady state, drift hits both alike) on this machine and
    judge b (candidate) against a (baseline): block k of a and block k of b ran side by side, so their
    block medians are pairs (paired statistics).
    """
    a, b = plan.steady_state([run_a, run_b])
    return compare_paired(
        name,
        block_medians(a, plan.blocks),
        block_medians(b, plan.blocks),
        alpha=alpha,
        min_effect=min_effect,
        min_samples=min_samples,
        seed=seed,
    )


def percentile_extra_info(benchmark: object) -> dict[str, float]:
    """p50/p90/p99 in ms of a pytest-benchmark fixture's raw rounds, for ``benchmark.extra_info``.

    Empty when the fixture is disabled (``--benchmark-disable``) or has not run yet.
    """
    if getattr(benchmark, "disabled", False):
        return {}
    data = getattr(getattr(getattr(benchmark, "stats", None), "stats", None), "data", None)
    if not data:
        return {}
    return {f"{key}_ms": value * 1e3 for key, value in percentiles(data).items()}


def _fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _row(v: Verdict) -> list[str]:
    ci = "-" if math.isnan(v.ci_low) else f"[{v.ci_low * 100:+.1f}, {v.ci_high * 100:+.1f}]"
    return [
        v.name,
        f"{v.n_base}/{v.n_cand}",
        _fmt(v.median_base * 1e3, ".3f"),
        _fmt(v.median_cand * 1e3, ".3f"),
        _fmt(v.change * 100, "+.1f"),
        ci,
        _fmt(v.p_value, ".2g"),
        v.status,
    ]


def format_table(verdicts: Sequence[Verdict]) -> str:
    """Plain aligned text table, one row per verdict (times in ms, change and CI in %)."""
    header = [
        "name",
        "n base/cand",
        "base ms",
        "cand ms",
        "change %",
        f"{CI_CONFIDENCE:.0%} CI %",
        "p",
        "status",
    ]
    rows = [header, *(_row(v) for v in verdicts)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    # Names and status read left-aligned; numbers right-aligned so decimal points line up.
    left = {0, len(header) - 1}

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows[1:])])


@dataclass(frozen=True, kw_only=True)
class GateVerdicts:
    """What ``detbench gate --json`` (and ``ab --json``) prints."""

    settings: dict[str, Any] = doc(
        "how it ran (open-ended): two files: baseline, candidate, alpha, min_effect, min_samples, "
        "confidence; --history: the store, candidate run, machine_id, baseline_runs, vary, problems, "
        "paired_with and comparisons (history.rebaseline.Comparison, the paired verdicts) too; "
        "ab: the block plan and each side's environment"
    )
    regression: bool = doc("some benchmark regressed (the command exits 1)")
    counts: dict[str, int] = doc("verdicts per status")
    verdicts: list[Verdict] = doc(
        "one per benchmark judged unpaired, sorted by name (perf.stats.Verdict); --history: the unpaired ones"
    )


def verdicts_to_json(
    verdicts: Sequence[Verdict], settings: Mapping[str, object], *, regression: bool | None = None
) -> str:
    """Strict JSON (NaN becomes null) of ``GateVerdicts``: settings, per-benchmark verdicts and a
    count per status; ``regression`` when more than these verdicts decide it (paired ones)."""
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.status] = counts.get(v.status, 0) + 1
    return dumps(
        GateVerdicts(
            settings=dict(settings),
            regression=counts.get("regression", 0) > 0 if regression is None else regression,
            counts=counts,
            verdicts=list(verdicts),
        )
    )
