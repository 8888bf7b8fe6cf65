"""``detbench dashboard``: one offline HTML page of the history, the latest report and tune result."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from detbench.history import store
    from detbench.report import dashboard

    with store.open_store(args.history) as source:
        hist = source.load()
        location = source.location
    for problem in hist.problems:
        print(f"detbench: history problem: {problem}")
    target = dashboard.write_page(
        args.out, hist, location=location, report=args.report, tune=args.tune, last=args.last
    )
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB, {len(hist.runs)} runs)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dashboard", help="one offline HTML page: latency history, verdicts, report, tune")
    d.add_argument("--history", required=True, metavar="URL|DIR", help="postgresql:// URL or a directory")
    d.add_argument("--out", type=Path, default=Path("dashboard"), help="writes OUT/index.html")
    d.add_argument("--report", type=Path, default=Path("report/report.json"), help="latest report.json")
    d.add_argument("--tune", type=Path, default=Path("tune/tune.json"), help="tune.json (when present)")
    d.add_argument("--last", type=int, default=5, help="runs pooled per verdict, as detbench gate (5)")
    d.set_defaults(func=run)
