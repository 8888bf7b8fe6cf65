"""``detbench export``: export the baseline (cached) and print the artifact paths."""

from __future__ import annotations

import argparse

from detbench.cli import _bench_options, _formats, _opset, _workbench


def run(args: argparse.Namespace) -> int:
    import sys

    from detbench.runtimes.backends import REGISTRY
    from detbench.runtimes.export import ExportSettings

    settings = ExportSettings(
        opset=args.opset, dynamic_batch=not args.static_batch, simplify=not args.no_simplify
    )
    bench = _workbench(args, export=settings)
    by_format = {cls.artifact_format: name for name, cls in REGISTRY.items()}
    formats = args.format
    if formats is None:  # every format these weights have (end2end only for a one-to-one head)
        formats = []
        for fmt, reason in bench.formats().items():
            if reason:
                print(f"detbench: {fmt} not exported: {reason}", file=sys.stderr)
            else:
                formats.append(fmt)
    for fmt in formats:
        print(f"{fmt}\t{bench.artifact(by_format[fmt])}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from detbench.runtimes.export import FORMATS

    e = sub.add_parser("export", help="export the baseline (cached) and print the artifact paths")
    _bench_options(e)
    e.add_argument(
        "--format",
        type=_formats,
        default=None,
        help=f"comma-separated, from {', '.join(FORMATS)} (default: every one these weights have)",
    )
    e.add_argument("--opset", type=_opset, default=17, help="ONNX opset (default 17)")
    e.add_argument("--static-batch", action="store_true", help="export a fixed batch of 1 (default: dynamic)")
    e.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    e.set_defaults(func=run)
