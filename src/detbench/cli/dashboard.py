"""``detbench dashboard``: one offline HTML page of the history, the latest report and tune result."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from detbench.report import dashboard

    return dashboard.run(args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from detbench.report import dashboard

    d = sub.add_parser("dashboard", help="one offline HTML page: latency history, verdicts, report, tune")
    dashboard.add_arguments(d)
    d.set_defaults(func=run)
