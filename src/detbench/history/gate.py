"""Gate a new run against the shared history of its machine class (``detbench gate --history URL|DIR``).

The candidate is the newest run of this machine class in the store (or ``--candidate`` RUN_ID, TAG or
a pytest-benchmark JSON file). The baseline of each benchmark is pooled from the last ``--last`` earlier
runs of the same machine class that ran it with the same configuration (detbench.history.store's
CONFIG_KEYS), or, with ``--baseline TAG``, the newest run of that machine class with that tag (or id).
``--vary threads`` leaves a key out of the match, to ask e.g. "is 2 threads faster than 1 here?".
The verdicts are the gate's own statistics (detbench.perf.stats.compare_samples).

``gate_history`` re-baselines first (issue 19, what ``--detbench-compare-fail`` does in a session):
each candidate benchmark is paired with one earlier run of its machine class and configuration —
``--baseline`` RUN|TAG, else the newest run tagged ``main`` (``MAIN_TAG``: the tag the saving job on
the main branch sets, ``--detbench-history-tag main``), else the newest earlier run, saying so — and
both runs' stored artifacts are timed here in alternated blocks (history.rebaseline); the benchmarks
that cannot be paired keep the pooled, unpaired verdict above, each saying why.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from detbench.errors import HistoryError, HistoryStoreError
from detbench.history import benchjson, store
from detbench.history.rebaseline import (
    ArtifactSource,
    Comparison,
    RebaselineSettings,
    Side,
    rebaseline,
    with_unpaired,
)
from detbench.perf import gate, machine
from detbench.perf.stats import Verdict, compare_samples


def config_key(config: dict, vary: Sequence[str]) -> tuple:
    return tuple(sorted((k, json.dumps(v)) for k, v in config.items() if k not in vary))


@dataclass(frozen=True)
class GateResult:
    candidate: store.RunRecord
    verdicts: list[Verdict]
    baseline_runs: dict[str, list[str]]  # benchmark -> run ids pooled for its baseline


def compare_with_history(
    candidate: store.RunRecord,
    earlier: Sequence[store.RunRecord],
    *,
    last: int = 5,
    vary: Sequence[str] = (),
    alpha: float = 0.01,
    min_effect: float = 0.10,
    min_samples: int = 9,
) -> GateResult:
    """One verdict per candidate benchmark against the pooled samples of its ``last`` matching runs.

    ``earlier`` is newest first and must not contain the candidate; runs of another machine class are
    the caller's to leave out.
    """
    verdicts, used = [], {}
    for bench in sorted(candidate.benchmarks, key=lambda b: b.fullname):
        want = config_key(bench.config, vary)
        matches = []
        for run in earlier:
            other = run.benchmark(bench.fullname)
            if other is not None and config_key(other.config, vary) == want:
                matches.append((run.run_id, other))
            if len(matches) == last:
                break
        used[bench.fullname] = [run_id for run_id, _ in matches]
        cand = np.asarray(bench.samples)
        if not matches:
            verdicts.append(gate._missing(bench.fullname, None, cand))
            continue
        base = np.concatenate([np.asarray(b.samples) for _, b in matches])
        verdicts.append(
            compare_samples(
                bench.fullname, base, cand, alpha=alpha, min_effect=min_effect, min_samples=min_samples
            )
        )
    return GateResult(candidate, verdicts, used)


MAIN_TAG = "main"  # the tag the main branch's saving job gives its runs (docs/ci.md)


def _candidate(ref: str | None, runs: list[store.RunRecord], machine: str) -> store.RunRecord:
    if ref is not None and Path(ref).is_file():
        try:
            return store.run_record(benchjson.load(ref), run_id=ref)
        except HistoryError as exc:
            raise HistoryStoreError(ref, exc.reason) from None
    if ref is not None:
        return store.find_run(runs, ref)
    mine = [r for r in runs if r.machine_id == machine]
    if not mine:
        raise LookupError(f"no run of this machine class ({machine}) in the store; pass --candidate")
    return mine[0]


def gate_against_history(
    runs: list[store.RunRecord],
    *,
    location: str,
    candidate: str | None = None,
    baseline: str | None = None,
    last: int = 5,
    vary: Sequence[str] = (),
    alpha: float = 0.01,
    min_effect: float = 0.10,
    min_samples: int = 9,
) -> GateResult:
    """Gate the candidate (``candidate`` RUN_ID, TAG or FILE; default: this machine class's newest run)
    against the earlier runs of its machine class in ``runs`` (newest first), pooled from the ``last``
    matching ones or, with ``baseline``, that one run. Raises HistoryStoreError naming ``location``
    when the candidate or baseline is not there."""
    try:
        cand = _candidate(candidate, runs, machine.machine_id())
        same_class = [r for r in runs if r.machine_id == cand.machine_id and r.run_id != cand.run_id]
        earlier = [r for r in same_class if r.created <= cand.created]
        if baseline is not None:
            earlier, last = [store.find_run(same_class, baseline)], 1
    except LookupError as exc:
        raise HistoryStoreError(location, str(exc)) from None
    return compare_with_history(
        cand, earlier, last=last, vary=vary, alpha=alpha, min_effect=min_effect, min_samples=min_samples
    )


@dataclass(frozen=True)
class HistoryComparison:
    """``detbench gate --history`` with re-baselining: every candidate benchmark's Comparison."""

    candidate: store.RunRecord
    comparisons: list[Comparison]
    paired_with: dict[str, str]  # benchmark -> the run whose artifact was re-timed beside the candidate's
    baseline_runs: dict[str, list[str]]  # benchmark -> run ids pooled for the unpaired verdict


def pairing_runs(
    cand: store.RunRecord,
    runs: Sequence[store.RunRecord],
    *,
    baseline: str | None = None,
    main_tag: str = MAIN_TAG,
) -> tuple[dict[str, store.RunRecord], dict[str, str], dict[str, str]]:
    """(run to pair with, why none, note) per candidate benchmark: the run ``baseline`` names, else the
    newest earlier run of the machine class tagged ``main_tag`` that ran the benchmark with the same
    configuration, else the newest earlier such run of any tag (noted: it is no run of main)."""
    same_class = [r for r in runs if r.machine_id == cand.machine_id and r.run_id != cand.run_id]
    earlier = [r for r in same_class if r.created <= cand.created]
    chosen: dict[str, store.RunRecord] = {}
    why: dict[str, str] = {}
    notes: dict[str, str] = {}
    named = store.find_run(same_class, baseline) if baseline is not None else None
    for bench in cand.benchmarks:
        name, want = bench.fullname, config_key(bench.config, ())
        if named is not None:
            if named.benchmark(name) is None:
                why[name] = f"the baseline run {named.run_id} ({baseline}) did not run it"
            else:
                chosen[name] = named
            continue
        matching = [
            r for r in earlier if (b := r.benchmark(name)) is not None and config_key(b.config, ()) == want
        ]
        main = [r for r in matching if r.tag == main_tag]
        if main:
            chosen[name] = main[0]
        elif matching:
            chosen[name] = matching[0]
            notes[name] = (
                f"no earlier run tagged {main_tag!r} ran it: re-timed against the newest earlier run, "
                f"{matching[0].run_id} (tag {matching[0].tag or 'none'})"
            )
        else:
            why[name] = "no earlier run of this machine class ran it with this configuration"
    return chosen, why, notes


def _candidate_sides(ref: str | None, cand: store.RunRecord) -> dict[str, Side]:
    """The candidate's sides: a pytest-benchmark FILE's own artifact paths (tried before the store's
    copies), else the stored run's identities (artifacts restored from the store)."""
    if ref is not None and Path(ref).is_file():
        saved = benchjson.load(ref)
        return {b.fullname: Side.from_extra_info(b.extra_info) for b in saved.benchmarks}
    return {b.fullname: Side.stored(b.identity) for b in cand.benchmarks}


def gate_history(
    runs: list[store.RunRecord],
    *,
    location: str,
    stores: Sequence[ArtifactSource],
    workdir: Path,
    candidate: str | None = None,
    baseline: str | None = None,
    main_tag: str = MAIN_TAG,
    last: int = 5,
    vary: Sequence[str] = (),
    alpha: float = 0.01,
    min_effect: float = 0.10,
    min_samples: int = 9,
    settings: RebaselineSettings | None = None,
    progress: Callable[[str], object] | None = None,
    rebaseline_fn: Callable[..., list[Comparison]] = rebaseline,
) -> HistoryComparison:
    """Re-baselined ``gate_against_history``: each candidate benchmark paired with its baseline run
    (``pairing_runs``), both artifacts restored from ``stores`` and timed here with the sequential
    verdict and Holm (history.rebaseline); those that cannot be paired get the unpaired verdict against
    the pooled runs, with why."""
    unpaired = gate_against_history(
        runs,
        location=location,
        candidate=candidate,
        baseline=baseline,
        last=last,
        vary=vary,
        alpha=alpha,
        min_effect=min_effect,
        min_samples=min_samples,
    )
    cand = unpaired.candidate
    try:
        chosen, why, notes = pairing_runs(cand, runs, baseline=baseline, main_tag=main_tag)
    except LookupError as exc:
        raise HistoryStoreError(location, str(exc)) from None
    baselines = {}
    for name, run in chosen.items():
        bench = run.benchmark(name)
        assert bench is not None  # pairing_runs chose runs that ran it
        baselines[name] = Side.stored(bench.identity)
    comparisons = rebaseline_fn(
        _candidate_sides(candidate, cand),
        baselines,
        stores=stores,
        workdir=workdir,
        settings=settings or RebaselineSettings(),
        progress=progress,
    )
    comparisons = [replace(c, notes=(notes[c.name], *c.notes)) if c.name in notes else c for c in comparisons]
    comparisons += [Comparison(name=n, paired=None, unpaired=None, why=w, notes=()) for n, w in why.items()]
    paired = {c.name for c in comparisons if c.paired is not None}
    merged = with_unpaired(comparisons, [v for v in unpaired.verdicts if v.name not in paired])
    return HistoryComparison(
        candidate=cand,
        comparisons=merged,
        paired_with={n: chosen[n].run_id for n in paired},
        baseline_runs=unpaired.baseline_runs,
    )
