"""``detbench gate --history URL|DIR``: gate a new run against the shared history of its machine class.

The candidate is the newest run of this machine class in the store (or ``--candidate`` RUN_ID, TAG or
a pytest-benchmark JSON file). The baseline of each benchmark is pooled from the last ``--last`` earlier
runs of the same machine class that ran it with the same configuration (detbench.history.store's
CONFIG_KEYS), or, with ``--baseline TAG``, the newest run of that machine class with that tag (or id).
``--vary threads`` leaves a key out of the match, to ask e.g. "is 2 threads faster than 1 here?".
The verdicts are the gate's own statistics (detbench.perf.stats.compare_samples).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detbench.errors import HistoryError, HistoryStoreError
from detbench.history import benchjson, store
from detbench.perf import gate, machine
from detbench.perf.stats import CI_CONFIDENCE, Verdict, compare_samples


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--history`` family of ``detbench gate`` options."""
    parser.add_argument(
        "--history",
        metavar="URL|DIR",
        help="gate against a history store (postgresql:// URL or a directory) instead of two files",
    )
    parser.add_argument("--candidate", metavar="RUN|TAG|FILE", help="with --history: the run under test")
    parser.add_argument(
        "--baseline",
        metavar="RUN|TAG",
        help="with --history: compare with this run or newest run with this tag",
    )
    parser.add_argument(
        "--last", type=int, default=5, help="with --history: pool the last N matching runs as baseline (5)"
    )
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        choices=store.CONFIG_KEYS,
        help="with --history: leave this configuration key out of the match (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    """``detbench gate --history``: 1 on a regression or on corrupt history rows, else 0."""
    with_store = store.open_store(args.history)
    try:
        found = with_store.load()
    finally:
        with_store.close()
    for problem in found.problems:
        print(f"detbench: history problem: {problem}", file=sys.stderr)
    try:
        cand = _candidate(args.candidate, found.runs, machine.machine_id())
        same_class = [r for r in found.runs if r.machine_id == cand.machine_id and r.run_id != cand.run_id]
        earlier = [r for r in same_class if r.created <= cand.created]
        if args.baseline is not None:
            earlier, last = [store.find_run(same_class, args.baseline)], 1
        else:
            last = args.last
    except LookupError as exc:
        raise HistoryStoreError(with_store.location, str(exc)) from None
    result = compare_with_history(
        cand,
        earlier,
        last=last,
        vary=args.vary,
        alpha=args.alpha,
        min_effect=args.min_effect,
        min_samples=args.min_samples,
    )
    pooled = sorted({r for ids in result.baseline_runs.values() for r in ids})
    if args.json:
        settings = {
            "history": with_store.location,
            "candidate": cand.run_id,
            "machine_id": cand.machine_id,
            "baseline_runs": result.baseline_runs,
            "vary": args.vary,
            "alpha": args.alpha,
            "min_effect": args.min_effect,
            "min_samples": args.min_samples,
            "confidence": CI_CONFIDENCE,
            "problems": found.problems,
        }
        print(gate.verdicts_to_json(result.verdicts, settings))
    else:
        print(
            f"candidate run {cand.run_id} ({cand.created:%Y-%m-%d %H:%M} UTC,"
            f" machine class {cand.machine_id})"
            f" vs run(s) {', '.join(pooled) or 'none'} of {with_store.location}"
            + (f", varying {', '.join(args.vary)}" if args.vary else "")
        )
        print(gate.format_table(result.verdicts))
    regressed = any(v.status == "regression" for v in result.verdicts)
    return 1 if regressed or found.problems else 0
