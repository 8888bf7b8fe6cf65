"""``detbench predict``: detect garments in images with any backend."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detbench.cli import _bench_options, _fail, _fraction, _workbench
from detbench.errors import DetbenchError


def run(args: argparse.Namespace) -> int:
    from detbench.data.images import load_image
    from detbench.runtimes.postprocess import postprocess
    from detbench.runtimes.preprocess import preprocess

    bench = _workbench(args)
    backend = bench.load(args.backend)
    results, bad = [], 0
    for path in args.images:
        # One bad file must not cost the others their results: report it on its own line, go on.
        try:
            x, infos = preprocess([load_image(path)], bench.imgsz)
        except (DetbenchError, ValueError, OSError) as exc:
            bad += 1
            _fail(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            results.append({"image": str(path), "error": str(exc), "detections": None})
            continue
        det = postprocess(backend.run(x), infos, bench.names, conf=args.conf)[0]
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
    pr.add_argument("--backend", choices=list(REGISTRY), default="onnxruntime")
    pr.add_argument("--conf", type=_fraction(), default=0.25)
    pr.add_argument("--json", action="store_true")
    _bench_options(pr)
    pr.set_defaults(func=run)
