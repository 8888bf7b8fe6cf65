"""Search for an INT8 (ONNX Runtime static QDQ) recipe that keeps accuracy; record what each gave.

    python scripts/int8_recipes.py [--weights W] [--out fixtures/int8_recipes.json]

Each recipe is exported into a private cache and scored on the synthetic val split with
ultralytics' metric code, next to the fp32 ONNX model. The chosen default lives in
``detbench.runtimes.export.Int8Recipe``; this script is the evidence for it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from detbench import paths
from detbench._fs import atomic_write_text
from detbench.data.datasets import load_dataset
from detbench.model.baseline import resolve_weights, synthetic_dataset
from detbench.paths import configure_environment
from detbench.runtimes.backends import create
from detbench.runtimes.cache import ArtifactCache
from detbench.runtimes.export import HEAD, Exporter, ExportSettings, Int8Recipe
from detbench.verify.accuracy import evaluate

RECIPES: dict[str, Int8Recipe] = {
    "naive: whole graph, MinMax, 64 imgs": Int8Recipe(
        calibration_images=64, method="MinMax", keep_fp32=(), reduce_range=False
    ),
    "head non-conv fp32, MinMax, 64 imgs": Int8Recipe(
        calibration_images=64,
        method="MinMax",
        keep_fp32=(),
        keep_fp32_non_conv=(HEAD,),
        reduce_range=False,
    ),
    "head fp32, MinMax, 128 imgs": Int8Recipe(method="MinMax"),
    "head fp32, Entropy, 128 imgs": Int8Recipe(method="Entropy"),
    "head fp32, Percentile, 128 imgs": Int8Recipe(method="Percentile"),
    "head fp32, Percentile, 256 imgs": Int8Recipe(method="Percentile", calibration_images=256),
    "head + stem fp32, Percentile, 128 imgs": Int8Recipe(method="Percentile", keep_fp32=(HEAD, "/model.0/")),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--only", nargs="*", help="recipe names to run (default: all)")
    ap.add_argument("--out", type=Path, default=paths.FIXTURES / "int8_recipes.json")
    args = ap.parse_args(argv)
    weights = resolve_weights(args.weights)
    ds = load_dataset(synthetic_dataset())
    cache = ArtifactCache(paths.cache_dir("int8-search"))
    results = []
    base = Exporter(weights, cache=cache)
    fp32 = create("onnxruntime")
    fp32.load(base.get("onnx").path)
    ref = evaluate(fp32, ds, imgsz=base.settings.imgsz)
    print(f"fp32 onnx: mAP50 {ref.mAP50:.4f} mAP50-95 {ref.mAP50_95:.4f}", flush=True)
    for name, recipe in RECIPES.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        exp = Exporter(
            weights, replace(ExportSettings(), int8=recipe), cache=cache, calib_images=ds.images("train")
        )
        art = exp.get("onnx-int8")
        b = create("onnxruntime-int8")
        b.load(art.path)
        acc = evaluate(b, ds, imgsz=exp.settings.imgsz)
        worst = max(
            ((ref.per_class[c]["mAP50"] or 0) - (acc.per_class[c]["mAP50"] or 0), c) for c in ref.per_class
        )
        row = {
            "recipe": name,
            **asdict(recipe.for_head(exp.head)),  # the head's own prefix, e.g. /model.22/ (YOLOv8n)
            "mAP50": acc.mAP50,
            "mAP50-95": acc.mAP50_95,
            "delta_mAP50": acc.mAP50 - ref.mAP50,
            "delta_mAP50-95": acc.mAP50_95 - ref.mAP50_95,
            "worst_class_drop": {"class": worst[1], "mAP50_drop": worst[0]},
            "size_mb": art.path.stat().st_size / 1e6,
            "seconds": time.perf_counter() - t0,
        }
        results.append(row)
        print(
            f"{name:<45} mAP50 {acc.mAP50:.4f} ({row['delta_mAP50']:+.4f}) mAP50-95 {acc.mAP50_95:.4f} "
            f"({row['delta_mAP50-95']:+.4f}) worst class {worst[1]} -{worst[0]:.3f}",
            flush=True,
        )
    record = {
        "weights_sha256": base.weights_sha256,
        "fp32_onnx": {"mAP50": ref.mAP50, "mAP50-95": ref.mAP50_95},
        "val_images": ref.images,
        "command": "python scripts/int8_recipes.py",
        "results": results,
    }
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    configure_environment()
    raise SystemExit(main())
