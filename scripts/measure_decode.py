"""Measure what the decode variants' claims and bounds rest on (``detbench.runtimes.decode``).

    python scripts/measure_decode.py [--backend onnxruntime] [--per-size 8] [--seed 0]
        [--sizes 640x480,1280x720,1920x1080] [--imgsz N]

On the photo-sized set (``detbench.data.photos``, built once into the cache) plus ultralytics' bus.jpg
and zidane.jpg: each variant's displayed shape against the reference's; the full-size variants' max
abs pixel difference from the reference; the reduced variants' factor per image, their max abs pixel
difference from each other (both are libjpeg-turbo's scaled IDCT) and their detections
(the committed baseline on ``--backend`` exported at ``--imgsz``, default the size it was trained at;
ultralytics' predict defaults: conf 0.25, iou 0.7) against the reference pipeline's, matched greedily
by class at IoU >= 0.5, overall and per DCT factor: the smallest matched IoU, the largest score
difference (and its p95, p99), how many pairs fall outside the row's IoU and score bounds, and how
many detections went unmatched on either side (with the score of the one farthest above the
threshold). ``accuracy``: each variant's mAP50, mAP50-95 and per-class mAP50 on the photo set's
labels (``verify.accuracy.evaluate``, ultralytics' metric code), and each reduced variant's drop from
the reference (overall, and the largest per-class mAP50 drop). Prints one JSON document.

The baseline was trained at 128 px: at a larger ``--imgsz`` it runs outside what it learned (see the
reference's mAP in ``accuracy``), so read those detection figures with that in mind.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

import numpy as np

from detbench.data.datasets import load_dataset
from detbench.data.photos import PHOTO_SIZES, PhotoConfig, photo_dataset, ultralytics_photos
from detbench.paths import configure_environment
from detbench.runtimes.decode import DECODERS, REFERENCE
from detbench.runtimes.postprocess import CONF
from detbench.runtimes.workbench import Workbench
from detbench.verify.accuracy import evaluate
from detbench.verify.compare import match_detections
from detbench.verify.decode import DECODE_TOLERANCES, detect_decoded

MATCH_IOU = 0.5
ROW = DECODE_TOLERANCES["opencv-reduced"]  # both reduced variants share one row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--per-size", type=int, default=PhotoConfig.per_size)
    ap.add_argument("--seed", type=int, default=PhotoConfig.seed)
    ap.add_argument("--sizes", type=_sizes, default=PHOTO_SIZES, help="stored WxH,WxH,...")
    ap.add_argument("--imgsz", type=int, default=None, help="model input (default: trained size)")
    args = ap.parse_args()
    configure_environment()

    cfg = PhotoConfig(per_size=args.per_size, sizes=args.sizes, seed=args.seed)
    dataset = load_dataset(photo_dataset(cfg))
    paths = dataset.images("val")
    extra = list(ultralytics_photos())
    bench = Workbench.from_options(threads=1, imgsz=args.imgsz)
    backend = bench.load(args.backend)
    imgsz, names = bench.imgsz, bench.names

    out: dict = {
        "row": {
            "det_iou": ROW.det_iou,
            "det_score": ROW.det_score,
            "det_unmatched_frac": ROW.det_unmatched_frac,
        },
        "images": len(paths),
        "photo_set": cfg.key(),
        "ultralytics_photos": [p.name for p in extra],
        "imgsz": imgsz,
    }
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
        stats: dict[str, _Stats] = {}
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
            lost = [float(ref.scores[i]) for i in m.unmatched_ref] + [
                float(got.scores[i]) for i in m.unmatched_out
            ]
            for key in ("all", str(d.factor)):
                st = stats.setdefault(key, _Stats())
                st.ious += [pair[2] for pair in m.pairs]
                st.score_diffs += [pair[3] for pair in m.pairs]
                st.total += len(ref) + len(got)
                st.lost += lost
        if variant.identical:
            row["max_abs_pixel_diff"] = max_diff
        else:
            row["detections"] = stats.pop("all", _Stats()).summary()
            row["detections_by_factor"] = {k: stats[k].summary() for k in sorted(stats, key=int)}
        out[name] = row

    acc = {n: evaluate(backend, dataset, imgsz=imgsz, decoder=n).to_dict() for n in [REFERENCE, *reduced]}
    out["accuracy"] = {"reference": REFERENCE, **{n: _accuracy_row(acc[n], acc[REFERENCE]) for n in acc}}
    print(json.dumps(out, indent=2))


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(tuple(int(v) for v in part.lower().split("x")) for part in text.split(","))  # type: ignore[misc]


@dataclass
class _Stats:
    """Matched pairs and unmatched detections of one reduced decode (one factor, or all)."""

    ious: list[float] = field(default_factory=list)
    score_diffs: list[float] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)  # scores of unmatched detections, both sides
    total: int = 0  # detections on both sides

    def summary(self) -> dict:
        ious, diffs = self.ious, self.score_diffs

        def pct(values: list[float], q: float) -> float | None:
            return round(float(np.percentile(values, q)), 4) if values else None

        return {
            "matched": len(ious),
            "min_iou": round(min(ious), 4) if ious else None,
            "p05_iou": pct(ious, 5),
            "max_score_diff": round(max(diffs), 4) if diffs else None,
            "p95_score_diff": pct(diffs, 95),
            "p99_score_diff": pct(diffs, 99),
            "iou_below_row": sum(i < ROW.det_iou for i in ious),
            "score_diff_above_row": sum(d > ROW.det_score for d in diffs),
            "unmatched": len(self.lost),
            "total_both_sides": self.total,
            "unmatched_frac": round(len(self.lost) / self.total, 4) if self.total else None,
            "max_unmatched_score_above_conf": round(max([0.0] + [s - CONF for s in self.lost]), 4),
        }


def _accuracy_row(acc: dict, ref: dict) -> dict:
    """mAP50, mAP50-95 and per-class mAP50; for a variant, its drop from the reference's."""
    row = {
        "mAP50": round(acc["mAP50"], 4),
        "mAP50-95": round(acc["mAP50-95"], 4),
        "per_class_mAP50": {
            k: None if v["mAP50"] is None else round(v["mAP50"], 4) for k, v in acc["per_class"].items()
        },
    }
    if acc is not ref:
        drops = [
            (r["mAP50"] - (acc["per_class"][k]["mAP50"] or 0.0), k)
            for k, r in ref["per_class"].items()
            if r["mAP50"] is not None
        ]
        worst = max(drops) if drops else (0.0, None)
        row["drop"] = {
            "mAP50": round(ref["mAP50"] - acc["mAP50"], 4),
            "mAP50-95": round(ref["mAP50-95"] - acc["mAP50-95"], 4),
            "max_class_mAP50": round(worst[0], 4),
            "max_class": worst[1],
        }
    return row


if __name__ == "__main__":
    main()
