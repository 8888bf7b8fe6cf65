"""``detbench report``: the main job, accuracy, size and latency of every backend."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from detbench.cli import _backends, _bench_options, _out_dir, _positive, _report_json

if TYPE_CHECKING:
    from detbench.report.build import ReportSettings


def report_settings(args: argparse.Namespace) -> ReportSettings:
    """The report's settings from ``detbench report``'s options (``--quick`` picks the short defaults)."""
    from detbench.perf.peak import SIZES
    from detbench.perf.timing import DISCARD
    from detbench.report.build import ReportSettings
    from detbench.runtimes.backends import REGISTRY

    quick = bool(getattr(args, "quick", False))
    rounds = getattr(args, "rounds", None) or (40 if quick else 160)
    val_images = getattr(args, "val_images", None) or (64 if quick else None)
    backends = list(getattr(args, "backends", None) or REGISTRY)
    return ReportSettings(
        weights=args.weights,
        data=args.data,
        imgsz=args.imgsz,
        threads=args.threads,
        artifacts=tuple(args.artifact or ()),
        backends=tuple(dict.fromkeys(["pytorch", *backends])),
        batch=args.batch,
        out=Path(args.out),
        quick=quick,
        val_images=val_images,
        rounds=rounds,
        warmup=DISCARD,
        throughput_rounds=max(3, rounds // 3),
        matmul_sizes=SIZES,
        matmul_repeats=5,
        default_backends=backends == list(REGISTRY),
        tune_json=getattr(args, "tune_json", None),
        full=bool(getattr(args, "full", False)),
        remeasure_accuracy=bool(getattr(args, "remeasure_accuracy", False)),
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from detbench.jsonsafe import json_safe
    from detbench.report.build import print_verdict, run_report
    from detbench.report.render import print_table

    report, written = run_report(report_settings(args), console=Console(stderr=True))
    console = Console()
    if not console.is_terminal:  # piped or captured: rich would squeeze the table into 80 columns
        console = Console(width=200)
    print_table(json_safe(report), console)
    console.print(f"wrote {', '.join(str(p) for p in written.values())}", highlight=False, soft_wrap=True)
    return print_verdict(report, console, compare=getattr(args, "compare", None))


def add_parser(sub: argparse._SubParsersAction) -> None:
    from detbench.runtimes.backends import REGISTRY

    r = sub.add_parser("report", help="the main job: accuracy, size and latency of every backend")
    _bench_options(r)
    r.add_argument("--backends", type=_backends, default=list(REGISTRY))
    r.add_argument("--batch", type=_positive, default=8, help="batch size for the throughput run")
    r.add_argument("--out", type=_out_dir, default=Path("report"))
    r.add_argument("--quick", action="store_true", help="fewer images and rounds (about a third of the time)")
    r.add_argument(
        "--full",
        action="store_true",
        help="also throughput at --batch, latency at 1 thread and all cores, first calls in fresh "
        "processes, the GEMM roofline, and the opt-in backends (pytorch-compile); about 5 min",
    )
    r.add_argument(
        "--remeasure-accuracy",
        action="store_true",
        help="score every backend on the val images again; by default a backend whose artifact, data, "
        "settings, library versions and CPU match an earlier run's reuses that run's accuracy record",
    )
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
    tune = r.add_mutually_exclusive_group()
    tune.add_argument(
        "--tune-json",
        type=Path,
        metavar="PATH",
        help="a detbench tune result: its recommended row is marked, and its recommended pipeline "
        "(decode/preprocess/postprocess variants) timed end to end on the photos beside the reference one, "
        "on every backend (default: OUT/tune.json's row if present, and each stage's registered variant "
        "that claims the reference's output)",
    )
    tune.add_argument(
        "--tune", dest="tune_json", type=Path, metavar="PATH", help="deprecated alias of --tune-json"
    )
    r.set_defaults(func=run)
