"""``detbench predict``: detect garments in images with any backend, through the reference pipeline
or the one ``detbench tune`` recommended (``--pipeline recommended``, read from ``--tune-json``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detbench.cli import _bench_options, _fail, _fraction, _workbench
from detbench.errors import DetbenchError

DEFAULT_BACKEND = "onnxruntime"
DEFAULT_TUNE_JSON = Path("tune") / "tune.json"  # where `detbench tune` writes it by default (--out tune)
# Options tune.json decides for --pipeline recommended (threads too, but its default cannot be told apart).
_FROM_TUNE = ("backend", "weights", "imgsz", "artifact")


def load(args: argparse.Namespace):
    """The ready pipeline: the reference stages on ``--backend`` (today's predict), or tune.json's."""
    from detbench.runtimes.pipeline import BackendConfig, Pipeline
    from detbench.tune.pipelines import pipeline_from_tune

    if args.pipeline == "recommended":
        given = [f"--{k}" for k in _FROM_TUNE if getattr(args, k)]
        if given:
            raise DetbenchError(
                f"{', '.join(given)}: --pipeline recommended runs the backend configuration tune.json names"
            )
        path = args.tune_json or DEFAULT_TUNE_JSON
        if not path.is_file():
            raise DetbenchError(
                f"{path}: no tune.json; run `detbench tune` (writes {DEFAULT_TUNE_JSON}) or pass --tune-json"
            )
        return pipeline_from_tune(path).load(conf=args.conf)
    bench = _workbench(args)
    name = args.backend or DEFAULT_BACKEND
    config = BackendConfig(name, args.threads, bench.artifact(name), bench.imgsz, bench.names)
    return Pipeline(config).load(bench.load(name), conf=args.conf)


def run(args: argparse.Namespace) -> int:
    pipeline = load(args)
    results, bad = [], 0
    for path in args.images:
        # One bad file must not cost the others their results: report it on its own line, go on.
        try:
            det = pipeline(path)
        except (DetbenchError, ValueError, OSError) as exc:
            bad += 1
            _fail(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            results.append({"image": str(path), "error": str(exc), "detections": None})
            continue
        results.append({"image": str(path), "error": None, "detections": det.to_list()})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["error"] is not None:
                continue
            print(f"{r['image']}: {len(r['detections'])} detection(s)")
            for d in r["detections"]:
                print(f"  {d['class_name']:<9} {d['score']:.3f}  {d['xyxy']}")
    if bad and len(args.images) > 1:
        return _fail(f"{bad} of {len(args.images)} images could not be read (each listed above)")
    return 1 if bad else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from detbench.runtimes.backends import REGISTRY

    pr = sub.add_parser("predict", help="detect garments in images with any backend")
    pr.add_argument("images", nargs="+", type=Path, help="image files; unreadable ones are listed, not fatal")
    pr.add_argument(
        "--backend",
        choices=list(REGISTRY),
        help=f"backend of the reference pipeline (default {DEFAULT_BACKEND})",
    )
    pr.add_argument("--conf", type=_fraction(), default=0.25)
    pr.add_argument(
        "--pipeline",
        choices=["reference", "recommended"],
        default="reference",
        help="reference: Pillow decode, ultralytics' letterbox and NMS on --backend; recommended: the "
        "pipeline and backend configuration tune.json recommends (default reference)",
    )
    pr.add_argument(
        "--tune-json",
        type=Path,
        help=f"tune.json of --pipeline recommended (default {DEFAULT_TUNE_JSON}, tune's default --out)",
    )
    pr.add_argument("--json", action="store_true")
    _bench_options(pr)
    pr.set_defaults(func=run)
