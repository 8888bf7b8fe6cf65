"""Measure what the decode variants' claims and bounds rest on (``detbench.runtimes.decode``).

    python scripts/measure_decode.py [--backend onnxruntime] [--per-size 8]

On the photo-sized set (``detbench.data.photos``, built once into the cache) plus ultralytics' bus.jpg
and zidane.jpg: each variant's displayed shape against the reference's; the full-size variants' max
abs pixel difference from the reference; the reduced variants' factor per image, their max abs pixel
difference from each other (both are libjpeg-turbo's scaled IDCT) and their detections
(the committed baseline on ``--backend``, ultralytics' predict defaults: conf 0.25, iou 0.7) against
the reference pipeline's, matched greedily by class at IoU >= 0.5: the smallest matched IoU, the
largest score difference and how many detections went unmatched on either side (with the score of
the one farthest above the threshold). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from detbench.data.datasets import load_dataset
from detbench.data.photos import PhotoConfig, photo_dataset, ultralytics_photos
from detbench.paths import configure_environment
from detbench.runtimes.decode import DECODERS, REFERENCE
from detbench.runtimes.postprocess import CONF
from detbench.runtimes.workbench import Workbench
from detbench.verify.compare import match_detections
from detbench.verify.decode import detect_decoded

MATCH_IOU = 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--per-size", type=int, default=PhotoConfig.per_size)
    args = ap.parse_args()
    configure_environment()

    paths = load_dataset(photo_dataset(PhotoConfig(per_size=args.per_size))).images("val")
    extra = list(ultralytics_photos())
    bench = Workbench.from_options(threads=1)
    backend = bench.load(args.backend)
    imgsz, names = bench.imgsz, bench.names

    out: dict = {"images": len(paths), "ultralytics_photos": [p.name for p in extra], "imgsz": imgsz}
    refs = {p: DECODERS[REFERENCE].decode(p, imgsz) for p in paths + extra}
    ref_dets = {p: detect_decoded(backend, refs[p], imgsz, names) for p in paths}
    reduced = [n for n, v in DECODERS.items() if not v.identical]
    out["reduced_variants_max_abs_pixel_diff"] = max(
        int(np.abs(a.rgb.astype(np.int16) - b.rgb).max()) if a.rgb.shape == b.rgb.shape else 255
        for p in paths + extra
        for a, b in [(DECODERS[reduced[0]].decode(p, imgsz), DECODERS[reduced[-1]].decode(p, imgsz))]
    )
    for name, variant in DECODERS.items():
        if name == REFERENCE:
            continue
        row: dict = {"identical_claimed": variant.identical, "shape_mismatches": [], "factors": {}}
        max_diff = 0
        ious, score_diffs, unmatched, total, worst_unmatched = [], [], 0, 0, 0.0
        for p in paths + extra:
            d = variant.decode(p, imgsz)
            if d.full_shape != refs[p].full_shape:
                row["shape_mismatches"].append(p.name)
            row["factors"][str(d.factor)] = row["factors"].get(str(d.factor), 0) + 1
            if d.factor == 1 and d.rgb.shape == refs[p].rgb.shape:
                max_diff = max(max_diff, int(np.abs(d.rgb.astype(np.int16) - refs[p].rgb).max()))
            if variant.identical or p in extra:
                continue
            ref, got = ref_dets[p], detect_decoded(backend, d, imgsz, names)
            m = match_detections(ref, got, iou=MATCH_IOU)
            ious += [pair[2] for pair in m.pairs]
            score_diffs += [pair[3] for pair in m.pairs]
            total += len(ref) + len(got)
            lost = [float(ref.scores[i]) for i in m.unmatched_ref] + [
                float(got.scores[i]) for i in m.unmatched_out
            ]
            unmatched += len(lost)
            worst_unmatched = max([worst_unmatched] + [s - CONF for s in lost])
        if variant.identical:
            row["max_abs_pixel_diff"] = max_diff
        if not variant.identical:
            row["detections"] = {
                "matched": len(ious),
                "min_iou": round(min(ious), 4) if ious else None,
                "p05_iou": round(float(np.percentile(ious, 5)), 4) if ious else None,
                "max_score_diff": round(max(score_diffs), 4) if score_diffs else None,
                "p95_score_diff": round(float(np.percentile(score_diffs, 95)), 4) if score_diffs else None,
                "unmatched": unmatched,
                "total_both_sides": total,
                "max_unmatched_score_above_conf": round(worst_unmatched, 4),
            }
        out[name] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
