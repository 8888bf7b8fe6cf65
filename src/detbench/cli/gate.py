"""``detbench gate``: two saved runs, or a run against its history (``--history``); exit 1 on a regression."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detbench.cli import _fail
from detbench.history import gate as history_gate
from detbench.history import store
from detbench.perf import gate
from detbench.perf.stats import CI_CONFIDENCE, GATE_ALPHA, UNPAIRED_MIN_EFFECT


def run(args: argparse.Namespace) -> int:
    if args.history is not None:
        if args.baseline_file or args.candidate_file:
            raise SystemExit(_fail("gate: pass either two run files or --history, not both", 2))
        return run_history(args)
    if not (args.baseline_file and args.candidate_file):
        raise SystemExit(
            _fail("gate: the following arguments are required: baseline, candidate (or --history)", 2)
        )
    return run_files(args)


def run_files(args: argparse.Namespace) -> int:
    """Two saved runs; 1 if any benchmark regressed, else 0. Raises HistoryError on unreadable runs."""
    verdicts = gate.gate(
        args.baseline_file,
        args.candidate_file,
        alpha=args.alpha,
        min_effect=args.min_effect,
        min_samples=args.min_samples,
    )
    if args.json:
        settings = {
            "baseline": str(args.baseline_file),
            "candidate": str(args.candidate_file),
            "alpha": args.alpha,
            "min_effect": args.min_effect,
            "min_samples": args.min_samples,
            "confidence": CI_CONFIDENCE,
        }
        print(gate.verdicts_to_json(verdicts, settings))
    else:
        print(gate.format_table(verdicts))
    return 1 if any(v.status == "regression" for v in verdicts) else 0


def run_history(args: argparse.Namespace) -> int:
    """``--history``: each benchmark re-timed here beside its baseline run's stored artifact (paired), or
    judged unpaired against the pooled runs, saying why; 1 on a regression, on corrupt history rows,
    when nothing was compared, or on an unknown with ``--unknown fail``."""
    import tempfile

    from detbench.history.rebaseline import (
        HISTORY_TITLE,
        PLANS,
        RebaselineSettings,
        fails,
        summary_lines,
        write_step_summary,
    )

    settings = RebaselineSettings(
        plan=PLANS[args.rebaseline_plan],
        max_seconds=args.rebaseline_max_seconds,
        baseline_weights=args.baseline_weights,
        candidate_weights=args.candidate_weights,
        baseline_weights_option="--baseline-weights",
        candidate_weights_option="--candidate-weights",
    )
    with (
        store.open_store(args.history) as opened,
        tempfile.TemporaryDirectory(prefix="detbench-gate-") as tmp,
    ):
        found = opened.load()
        for problem in found.problems:
            print(f"detbench: history problem: {problem}", file=sys.stderr)
        result = history_gate.gate_history(
            found.runs,
            location=opened.location,
            stores=[] if args.no_rebaseline else [opened],
            workdir=Path(tmp),
            candidate=args.candidate,
            baseline=args.baseline,
            main_tag=args.main_tag,
            last=args.last,
            vary=args.vary,
            alpha=args.alpha,
            min_effect=args.min_effect,
            min_samples=args.min_samples,
            settings=settings,
            progress=None if args.json else (lambda line: print(f"detbench gate: {line}", flush=True)),
            rebaseline_fn=_no_rebaseline if args.no_rebaseline else history_gate.rebaseline,
        )
        location = opened.location
    cand, comparisons = result.candidate, result.comparisons
    unknown_fails = args.unknown == "fail"
    pooled = sorted({r for ids in result.baseline_runs.values() for r in ids})
    if args.json:
        run_settings = {
            "history": location,
            "candidate": cand.run_id,
            "machine_id": cand.machine_id,
            "baseline_runs": result.baseline_runs,
            "paired_with": result.paired_with,
            "vary": args.vary,
            "alpha": args.alpha,
            "min_effect": args.min_effect,
            "min_samples": args.min_samples,
            "confidence": CI_CONFIDENCE,
            "problems": found.problems,
            "comparisons": comparisons,
        }
        unpaired = [c.unpaired for c in comparisons if c.unpaired is not None]
        print(gate.verdicts_to_json(unpaired, run_settings, regression=any(c.regressed for c in comparisons)))
    else:
        paired_runs = sorted(set(result.paired_with.values()))
        print(
            f"candidate run {cand.run_id} ({cand.created:%Y-%m-%d %H:%M} UTC,"
            f" machine class {cand.machine_id}) of {location}: re-timed beside run(s)"
            f" {', '.join(paired_runs) or 'none'}; unpaired against run(s) {', '.join(pooled) or 'none'}"
            + (f", varying {', '.join(args.vary)}" if args.vary else "")
        )
        for line in summary_lines(
            comparisons, found.problems, unknown_fails=unknown_fails, unknown_option="--unknown"
        ):
            print(line.text)
    write_step_summary(comparisons, found.problems, unknown_fails=unknown_fails, title=HISTORY_TITLE)
    return 1 if fails(comparisons, found.problems, unknown_fails=unknown_fails) else 0


def _no_rebaseline(candidates, baselines, **_: object) -> list:
    """--no-rebaseline: every benchmark judged unpaired, as before re-baselining existed."""
    from detbench.history.rebaseline import Comparison

    return [
        Comparison(name=n, paired=None, unpaired=None, why="--no-rebaseline", notes=())
        for n in sorted(candidates.keys() & baselines.keys())
    ]


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The two-file arguments of ``detbench gate`` and the statistics' settings."""
    # Optional so that `detbench gate --history URL` (add_history_arguments) needs neither.
    parser.add_argument(
        "baseline_file", nargs="?", type=Path, help="saved pytest-benchmark run to compare against"
    )
    parser.add_argument("candidate_file", nargs="?", type=Path, help="saved pytest-benchmark run under test")
    parser.add_argument(
        "--alpha",
        type=_probability,
        default=GATE_ALPHA,
        help="significance level of the one-sided test (0.01)",
    )
    parser.add_argument(
        "--min-effect",
        type=_non_negative,
        default=UNPAIRED_MIN_EFFECT,
        help="smallest median change that counts, as a fraction (0.10 = 10%%)",
    )
    parser.add_argument(
        "--min-samples", type=_at_least_two, default=9, help="fewer rounds on either side is inconclusive (9)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the verdict as JSON on stdout instead of the table"
    )


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
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
        "--main-tag",
        metavar="TAG",
        default=history_gate.MAIN_TAG,
        help="with --history: the tag of the main branch's runs, each benchmark's default baseline "
        "(main; the saving job sets it with --detbench-history-tag)",
    )
    parser.add_argument(
        "--no-rebaseline",
        action="store_true",
        help="with --history: judge every benchmark unpaired across sessions, re-timing nothing",
    )
    parser.add_argument(
        "--rebaseline-plan",
        choices=("full", "quick"),
        default="full",
        help="with --history: the sequential block plan of the re-timing (quick: short, for smoke tests)",
    )
    parser.add_argument(
        "--rebaseline-max-seconds",
        type=_non_negative,
        default=None,
        metavar="S",
        help="with --history: cap each benchmark's re-timing at S seconds (then: unknown)",
    )
    parser.add_argument(
        "--unknown",
        choices=("pass", "fail"),
        default="pass",
        help="with --history: exit status of a paired verdict left unknown at the cap (pass)",
    )
    parser.add_argument(
        "--baseline-weights",
        type=Path,
        metavar="PATH",
        help="with --history: the baseline run's eager PyTorch weights (no store keeps a pickle)",
    )
    parser.add_argument(
        "--candidate-weights",
        type=Path,
        metavar="PATH",
        help="with --history: the candidate run's eager PyTorch weights",
    )
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        choices=store.CONFIG_KEYS,
        help="with --history: leave this configuration key out of the match (repeatable)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gate", help="compare two saved runs, or a run with its history (--history); exit 1 on a regression"
    )
    add_arguments(g)
    add_history_arguments(g)
    g.set_defaults(func=run)
