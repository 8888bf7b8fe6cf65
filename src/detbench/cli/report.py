"""``detbench report``: the main job, accuracy, size and latency of every backend."""

from __future__ import annotations

import argparse
from pathlib import Path

from detbench.cli import _backends, _bench_options, _out_dir, _positive, _report_json


def run(args: argparse.Namespace) -> int:
    from detbench.report.build import run_report

    return run_report(args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from detbench.runtimes.backends import REGISTRY

    r = sub.add_parser("report", help="the main job: accuracy, size and latency of every backend")
    _bench_options(r)
    r.add_argument("--backends", type=_backends, default=list(REGISTRY))
    r.add_argument("--batch", type=_positive, default=8, help="batch size for the throughput run")
    r.add_argument("--out", type=_out_dir, default=Path("report"))
    r.add_argument("--quick", action="store_true", help="fewer images and rounds (about a third of the time)")
    r.add_argument(
        "--val-images", type=_positive, help="score the first N val images (default: all; 64 with --quick)"
    )
    r.add_argument(
        "--rounds",
        type=_positive,
        help="latency calls kept per backend at batch 1, in alternated blocks of up to 20 "
        "(default 160; 40 with --quick); throughput keeps a third",
    )
    r.add_argument(
        "--compare",
        type=_report_json,
        metavar="OLD/report.json",
        help="show each backend's change against an earlier report, with the gate's verdict",
    )
    r.add_argument(
        "--tune",
        type=Path,
        help="a detbench tune result whose recommended row is marked (default: OUT/tune.json if present)",
    )
    r.set_defaults(func=run)
