"""``detbench tune``: settings from the command line, progress bars, outputs. Thin glue only."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detbench.cli import _backends, _counts, _existing, _positive

if TYPE_CHECKING:
    from detbench.tune.search import TuneSettings

QUICK = {"val_images": 64}
FULL = {"val_images": None}


def tune_settings(args: argparse.Namespace) -> TuneSettings:
    """The search's settings from ``detbench tune``'s options (``--quick`` picks the short preset)."""
    from detbench.perf.machine import usable_cpus
    from detbench.perf.timing import BlockPlan
    from detbench.runtimes.workbench import parse_artifact_overrides
    from detbench.tune.search import TuneSettings
    from detbench.tune.space import configuration_space, thread_counts

    overrides = parse_artifact_overrides(args.artifact or [])
    preset = QUICK if args.quick else FULL
    plan = BlockPlan.TUNE_QUICK if args.quick else BlockPlan.TUNE
    threads = args.threads or thread_counts(usable_cpus(), quick=args.quick)
    points = configuration_space(
        args.backends, threads, static_batch=not (args.quick or args.no_static), fixed=overrides
    )
    return TuneSettings(
        weights=args.weights,
        data=args.data,
        imgsz=args.imgsz,
        points=tuple(points),
        overrides=overrides,
        val_images=args.val_images or preset["val_images"],
        plan=plan.with_blocks(args.blocks),
        accuracy=not args.latency_only,
        cold="front" if args.quick else "all",
        pipeline_search=not args.no_pipelines,
        pipeline_plan=BlockPlan.PIPELINES_QUICK if args.quick else BlockPlan.PIPELINES,
        photos_per_size=1 if args.quick else 2,
    )


def _progress(console: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


PHASES = {
    "verify": "load + verify configurations",
    "time": "time verified (kept calls)",
    "pipelines": "time pipelines (kept passes)",
    "cold": "cold starts (fresh processes)",
}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from detbench.tune.render import COLUMNS, PIPELINE_COLUMNS, pipeline_rows, rows, write_outputs
    from detbench.tune.search import run_search

    s = tune_settings(args)
    console = Console(stderr=True)
    with _progress(console) as prog:
        tasks: dict[str, Any] = {}

        def tick(phase: str, advance: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = prog.add_task(PHASES[phase], total=total)
            prog.advance(tasks[phase], advance)

        console.print(f"preparing: reference (eager PyTorch) and {len(s.points)} configurations")
        result = run_search(s, progress=tick)
    doc = result.doc
    command = "detbench " + " ".join(shlex.quote(a) for a in (args.argv or []))
    checkpoint = Path(doc["settings"]["weights"])
    written = write_outputs(
        doc,
        Path(args.out),
        artifact=None if result.recommended is None else result.recommended.artifact,
        command=command.strip(),
        checkpoint_bytes=checkpoint.stat().st_size if checkpoint.is_file() else None,
    )
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        table = Table(title="detbench tune (* recommended, P Pareto front)")
        for col in COLUMNS:
            left = col in ("config", "precision")
            table.add_column(col, justify="left" if left else "right", no_wrap=col == "config")
        for r in rows(doc):
            table.add_row(*r)
        Console(width=max(120, Console().width)).print(table)
        if doc["pipelines"]:
            ptable = Table(title="pipelines on the photo-sized set (* recommended; ms per image)")
            for col in PIPELINE_COLUMNS:
                ptable.add_column(col, justify="left" if col in ("pipeline", "admitted") else "right")
            for r in pipeline_rows(doc):
                ptable.add_row(*r)
            Console(width=max(120, Console().width)).print(ptable)
        for what, path in written.items():
            print(f"{what}: {path}")
    if result.recommended is None:
        print("detbench tune: no configuration verified; nothing recommended", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    tu = sub.add_parser(
        "tune",
        help="search backends x threads x batch layout for the fastest configuration that verifies, then "
        "pipeline variants on the fastest for the lowest end-to-end latency",
    )
    tu.add_argument(
        "--weights", type=_existing, help="ultralytics detection checkpoint (default: the YOLOv8n baseline)"
    )
    tu.add_argument("--data", type=_existing, help="data.yaml (default: the synthetic dataset)")
    tu.add_argument("--imgsz", type=_positive, help="model input size (default: the checkpoint's)")
    tu.add_argument("--backends", type=_backends, help="backends to search (default: every registered one)")
    tu.add_argument("--threads", type=_counts, help="thread counts, e.g. 1,2 (default: 1 .. usable cores)")
    tu.add_argument(
        "--artifact", action="append", metavar="BACKEND=PATH", help="search this artifact for BACKEND"
    )
    tu.add_argument("--quick", action="store_true", help="64 val images, short timing, no static-batch twins")
    tu.add_argument("--val-images", type=_positive, help="score the first N val images (default: all)")
    tu.add_argument("--blocks", type=_positive, help="timing blocks per configuration (default 8; 4 quick)")
    tu.add_argument("--no-static", action="store_true", help="skip the static-batch export twins")
    tu.add_argument(
        "--no-pipelines",
        action="store_true",
        help="skip the pipeline search (decode x preprocess x postprocess on the 2 fastest configurations)",
    )
    tu.add_argument(
        "--latency-only", action="store_true", help="no mAP (untrained weights): verify raw head + detections"
    )
    tu.add_argument("--out", type=Path, default=Path("tune"), help="output folder (default ./tune)")
    tu.add_argument("--json", action="store_true", help="print tune.json instead of the table")
    tu.set_defaults(func=run)
