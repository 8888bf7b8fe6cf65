"""``detbench tune``: search backends x threads x batch layout for the fastest verified configuration."""

from __future__ import annotations

import argparse
from pathlib import Path

from detbench.cli import _backends, _counts, _existing, _positive


def run(args: argparse.Namespace) -> int:
    from detbench.tune.run import run_tune

    return run_tune(args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    tu = sub.add_parser(
        "tune", help="search backends x threads x batch layout for the fastest configuration that verifies"
    )
    tu.add_argument(
        "--weights", type=_existing, help="YOLOv8 detection checkpoint (default: committed baseline)"
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
        "--latency-only", action="store_true", help="no mAP (untrained weights): verify raw head + detections"
    )
    tu.add_argument("--out", type=Path, default=Path("tune"), help="output folder (default ./tune)")
    tu.add_argument("--json", action="store_true", help="print tune.json instead of the table")
    tu.set_defaults(func=run)
