"""``detbench history prune``: remove stored artifacts that no run (or none of the newest N) references."""

from __future__ import annotations

import argparse
import sys

from detbench.cli import _Parser, _positive
from detbench.history import store


def run_prune(args: argparse.Namespace) -> int:
    """Prune the store's artifacts; the runs are kept (a compare then says their artifact is gone)."""
    with store.open_store(store.history_target(args.history)) as opened:
        pruned = opened.prune_artifacts(keep_runs=args.keep_runs)
        location = opened.location
    for problem in pruned.problems:
        print(f"detbench: history problem (its references not counted): {problem}", file=sys.stderr)
    counted = (
        f"the newest {pruned.runs_counted}" if args.keep_runs is not None else f"all {pruned.runs_counted}"
    )
    print(
        f"{location}: removed {len(pruned.removed)} artifact(s), kept {len(pruned.kept)} "
        f"(referenced by {counted} run(s))"
    )
    for sha in pruned.removed:
        print(f"  removed {sha}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser("history", help="maintain a history store (the runs and the artifacts they timed)")
    h.set_defaults(help_of=h)
    cmds = h.add_subparsers(dest="history_command", metavar="SUBCOMMAND", parser_class=_Parser)
    p = cmds.add_parser(
        "prune",
        help="remove stored artifacts that no run references (or none of the newest N runs)",
        description="Remove the artifacts a history store keeps that no run references; with "
        "--keep-runs N, only the newest N runs' references count. Runs are never removed.",
    )
    p.add_argument(
        "--history",
        metavar="URL|DIR",
        default=None,
        help="the store: a postgresql:// URL or a directory "
        "(default: $DETBENCH_HISTORY, else <cache>/history)",
    )
    p.add_argument(
        "--keep-runs",
        type=_positive,
        default=None,
        metavar="N",
        help="keep only the artifacts of the newest N runs (default: of every run)",
    )
    p.set_defaults(func=run_prune)
