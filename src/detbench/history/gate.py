"""Gate a new run against the shared history of its machine class (``detbench gate --history URL|DIR``).

The candidate is the newest run of this machine class in the store (or ``--candidate`` RUN_ID, TAG or
a pytest-benchmark JSON file). The baseline of each benchmark is pooled from the last ``--last`` earlier
runs of the same machine class that ran it with the same configuration (detbench.history.store's
CONFIG_KEYS), or, with ``--baseline TAG``, the newest run of that machine class with that tag (or id).
``--vary threads`` leaves a key out of the match, to ask e.g. "is 2 threads faster than 1 here?".
The verdicts are the gate's own statistics (detbench.perf.stats.compare_samples).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detbench.errors import HistoryError, HistoryStoreError
from detbench.history import benchjson, store
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
