"""``detbench data``: the synthetic dataset generator and the VOC converter."""

from __future__ import annotations

import argparse
import sys

from detbench.cli import _existing, _fraction, _out_dir, _Parser, _positive


def run_synth(args: argparse.Namespace) -> int:
    from detbench.data.datasets import SynthConfig, write_synthetic

    out = write_synthetic(
        args.out, SynthConfig(train=args.train, val=args.val, imgsz=args.imgsz, seed=args.seed)
    )
    print(out)
    return 0


def run_from_voc(args: argparse.Namespace) -> int:
    from detbench.data.voc import convert_voc

    report = convert_voc(args.src, args.out, val_fraction=args.val_fraction, skip_bad=args.skip_bad)
    for p in report.problems:
        print(f"skipped {p.file}: {p.reason}", file=sys.stderr)
    print(
        f"{report.data_yaml}: {report.converted} images, {report.boxes} boxes, "
        f"{len(report.problems)} problem(s)"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="datasets: synthetic generator, VOC converter")
    data.set_defaults(help_of=data)
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=_Parser)
    s = dsub.add_parser("synth", help="write the synthetic colorful-fashion dataset (YOLO format)")
    s.add_argument("--out", type=_out_dir, required=True)
    s.add_argument("--train", type=_positive, default=1500)
    s.add_argument("--val", type=_positive, default=200)
    s.add_argument("--imgsz", type=_positive, default=128)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run_synth)
    v = dsub.add_parser("from-voc", help="convert a Pascal-VOC tree (the real dataset) to YOLO format")
    v.add_argument("src", type=_existing)
    v.add_argument("--out", type=_out_dir, required=True)
    v.add_argument("--val-fraction", type=_fraction(high_open=True), default=0.2)
    v.add_argument("--skip-bad", action="store_true", help="convert the good files, list the bad ones")
    v.set_defaults(func=run_from_voc)
