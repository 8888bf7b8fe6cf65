"""``detbench gate``: two saved runs, or a run against its history (``--history``); exit 1 on a regression."""

from __future__ import annotations

import argparse

from detbench.cli import _fail


def run(args: argparse.Namespace) -> int:
    from detbench.history import gate as history_gate
    from detbench.perf import gate

    if args.history is not None:
        if args.baseline_file or args.candidate_file:
            raise SystemExit(_fail("gate: pass either two run files or --history, not both", 2))
        return history_gate.run(args)
    if not (args.baseline_file and args.candidate_file):
        raise SystemExit(
            _fail("gate: the following arguments are required: baseline, candidate (or --history)", 2)
        )
    return gate.run(args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from detbench.history import gate as history_gate
    from detbench.perf import gate as gate_mod

    g = sub.add_parser(
        "gate", help="compare two saved runs, or a run with its history (--history); exit 1 on a regression"
    )
    gate_mod.add_arguments(g)
    history_gate.add_arguments(g)
    g.set_defaults(func=run)
