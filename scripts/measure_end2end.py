"""Measure what the ``onnxruntime-end2end`` tolerance row and its speed claim rest on.

    python scripts/measure_end2end.py [--families yolo26,yolov10] [--val-images 100] [--rounds 6]
    python scripts/measure_end2end.py --weights best.pt --data data.yaml [--val-images 100]

With ``--weights`` (a trained model with a one-to-one head), what the suite, report and tune check,
by their own route: the end2end ONNX (``onnxruntime-end2end`` + ``postprocess_end2end``) against the
model's own end2end forward (``pytorch-end2end`` + ultralytics' postprocess, ``verify.reference``) on
the first ``--val-images`` val images of ``--data``: the rows, the detections matched by
``verify.compare.match_detections`` (at ``DEVIATION_IOU``, to see the worst pair) and the mAP of both on the
whole val split (``verify.accuracy.evaluate``).

Without it:

The model is each family's n scale with the baseline's classes, untrained but with BatchNorm
statistics from 16 synthetic scenes (``untrained_checkpoint(..., bn_images=16)``: random init alone
gives every anchor the same score). Deviation, on the synthetic val images: the end2end ONNX output
against the model's own end2end forward (the same rows, box px and score), and its detections
(``postprocess_end2end``) against ``YOLO(weights).predict(nms=False)``, the model's own NMS-free predict.
Latency, batch 1, one thread, inference + postprocess per image: the one-to-many export with NMS
(``onnxruntime`` + ``postprocess``) against end2end, blocks of ``--calls`` images alternated A B B A
for ``--rounds`` rounds; the ratio is of the medians. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from detbench import CLASS_NAMES
from detbench.data.datasets import load_dataset
from detbench.data.images import load_image
from detbench.model.baseline import synthetic_dataset
from detbench.model.checkpoint import load_detection_model
from detbench.paths import configure_environment
from detbench.runtimes.end2end import postprocess_end2end
from detbench.runtimes.export import untrained_checkpoint
from detbench.runtimes.postprocess import CONF, Detections, postprocess
from detbench.runtimes.preprocess import preprocess
from detbench.runtimes.workbench import Workbench
from detbench.verify.compare import box_iou

IMGSZ = 128
BN_IMAGES = 16


def own_predict(weights, rgb: np.ndarray, conf: float) -> Detections:
    """The model's own NMS-free predict: ultralytics letterboxes square (rect=False) like us."""
    from ultralytics import YOLO

    r = YOLO(str(weights)).predict(
        source=np.ascontiguousarray(rgb[..., ::-1]),
        imgsz=IMGSZ,
        rect=False,
        nms=False,
        conf=conf,
        device="cpu",
        verbose=False,
    )[0]
    b = r.boxes
    return Detections(b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(np.int64), CLASS_NAMES)


def pair_up(ref: Detections, out: Detections) -> list[tuple[int, int, float, float]]:
    """Greedy, highest reference score first: each takes the same-class candidate nearest in box
    (max abs px) and score. Not IoU: boxes in the letterbox padding clip to zero area (IoU 0 even
    with themselves) and border-clipped twins tie at IoU 1, which an untrained model has many of."""
    taken: set[int] = set()
    pairs = []
    for r in np.argsort(-ref.scores, kind="stable"):
        cost = np.abs(out.xyxy - ref.xyxy[r]).max(axis=1) + np.abs(out.scores - ref.scores[r])
        cost[[o for o in range(len(out)) if o in taken or out.class_ids[o] != ref.class_ids[r]]] = np.inf
        if len(out) and np.isfinite(cost.min()):
            o = int(np.argmin(cost))
            taken.add(o)
            pairs.append(
                (
                    int(r),
                    o,
                    float(np.abs(out.xyxy[o] - ref.xyxy[r]).max()),
                    float(abs(out.scores[o] - ref.scores[r])),
                )
            )
    return pairs


def deviation(family: str, val: list, conf: float) -> dict:
    weights = untrained_checkpoint("n", IMGSZ, CLASS_NAMES, family=family, bn_images=BN_IMAGES)
    bench = Workbench.from_options(weights, imgsz=IMGSZ)
    e2e = bench.load("onnxruntime-end2end")
    model = load_detection_model(weights, end2end=True)[0]
    rgbs = [np.asarray(load_image(p)) for p in val]
    x, infos = preprocess(rgbs, IMGSZ)
    out = e2e.run_batched(x, 8)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    # Rows line up unless two scores within fp32 rounding swap places in the top-k.
    same_rows = (ref[..., 5] == out[..., 5]).all(axis=1) & (np.abs(ref[..., :4] - out[..., :4]) < 0.1).all(
        axis=(1, 2)
    )
    ours = postprocess_end2end(out, infos, CLASS_NAMES, conf=conf)
    theirs = [own_predict(weights, rgb, conf) for rgb in rgbs]
    ious, dbox, dscore, unmatched, degenerate, counts = [], [], [], 0, 0, []
    for t, o in zip(theirs, ours):
        pairs = pair_up(t, o)
        unmatched += len(t) + len(o) - 2 * len(pairs)
        for ri, oi, db, ds in pairs:
            dbox.append(db)
            dscore.append(ds)
            b = t.xyxy[ri]
            if (b[2] - b[0]) * (b[3] - b[1]) > 0:
                ious.append(float(box_iou(t.xyxy[ri : ri + 1], o.xyxy[oi : oi + 1])[0, 0]))
            else:
                degenerate += 1
        counts.append(len(t))
    return {
        "weights": str(weights),
        "images": len(val),
        "raw_rows_same_order_images": int(same_rows.sum()),
        "raw_box_max_abs_px": float(np.abs(ref[..., :4] - out[..., :4])[same_rows].max(initial=0.0)),
        "raw_score_max_abs": float(np.abs(ref[..., 4] - out[..., 4])[same_rows].max(initial=0.0)),
        "predict_detections_per_image": [int(np.min(counts)), float(np.mean(counts)), int(np.max(counts))],
        "det_pairs": len(dbox),
        "det_max_box_abs_px": float(max(dbox, default=0.0)),
        "det_min_iou": float(min(ious, default=1.0)),
        "det_zero_area_pairs": degenerate,
        "det_max_score_diff": float(max(dscore, default=0.0)),
        "det_unmatched": unmatched,
        "det_count_equal_images": int(sum(len(t) == len(o) for t, o in zip(theirs, ours))),
    }


def latency(family: str, val: list, rounds: int, calls: int, conf: float) -> dict:
    weights = untrained_checkpoint("n", IMGSZ, CLASS_NAMES, family=family, bn_images=BN_IMAGES)
    bench = Workbench.from_options(weights, imgsz=IMGSZ)
    many, e2e = bench.load("onnxruntime"), bench.load("onnxruntime-end2end")
    batches = [preprocess([load_image(p)], IMGSZ) for p in val[:calls]]

    def one_to_many(x, infos):
        return postprocess(many.run(x), infos, CLASS_NAMES, conf=conf)

    def end2end(x, infos):
        return postprocess_end2end(e2e.run(x), infos, CLASS_NAMES, conf=conf)

    samples: dict[str, list[float]] = {"one_to_many_nms": [], "end2end": []}
    fns = {"one_to_many_nms": one_to_many, "end2end": end2end}
    for fn in fns.values():  # warm-up: first calls allocate
        for x, infos in batches[:5]:
            fn(x, infos)
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for name in order:
            for x, infos in batches:
                t0 = time.perf_counter()
                fns[name](x, infos)
                samples[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) * 1e3 for k, v in samples.items()}
    return {
        "median_ms": med,
        "end2end_over_one_to_many": med["end2end"] / med["one_to_many_nms"],
        "samples_each": len(samples["end2end"]),
        "threads": many.settings.threads,
    }


def suite_route(weights: str, data: str, n_images: int) -> dict:
    """The ``--weights`` measurement: the suite's own references, postprocesses and matcher."""
    from detbench.verify.accuracy import evaluate
    from detbench.verify.compare import (
        DEVIATION_IOU,
        TOLERANCES,
        OutputMismatch,
        assert_detections_match,
        detection_deviation,
    )
    from detbench.verify.reference import reference_detections

    bench = Workbench.from_options(weights, data)
    e2e, ref = bench.load("onnxruntime-end2end"), bench.load("pytorch-end2end")
    ds = load_dataset(data)
    val = ds.images("val")[:n_images]
    x, infos = preprocess([load_image(p) for p in val], bench.imgsz)
    ref_out, out = ref.run_batched(x, 1), e2e.run_batched(x, 8)
    same_rows = (ref_out[..., 5] == out[..., 5]).all(axis=1) & (
        np.abs(ref_out[..., :4] - out[..., :4]) < 0.1
    ).all(axis=(1, 2))
    theirs = reference_detections(ref_out, infos, bench.names, output="detections")
    ours = postprocess_end2end(out, infos, bench.names)
    d = detection_deviation(theirs, ours, iou=DEVIATION_IOU)
    tol = TOLERANCES["onnxruntime-end2end"]
    try:
        assert_detections_match(theirs, ours, tol)
        row = "passes"
    except OutputMismatch as exc:
        row = str(exc).splitlines()[0]
    acc = {
        n: evaluate(b, ds, imgsz=bench.imgsz, batch=1 if n == "pytorch-end2end" else 8).to_dict()
        for n, b in (("pytorch-end2end", ref), ("onnxruntime-end2end", e2e))
    }
    r, o = acc["pytorch-end2end"], acc["onnxruntime-end2end"]
    class_drop = max(
        (v["mAP50"] or 0.0) - (o["per_class"][k]["mAP50"] or 0.0)
        for k, v in r["per_class"].items()
        if v["mAP50"] is not None
    )
    return {
        "weights": weights,
        "images": len(val),
        "raw_rows_same_order_images": int(same_rows.sum()),
        "raw_box_max_abs_px": float(np.abs(ref_out[..., :4] - out[..., :4])[same_rows].max(initial=0.0)),
        "raw_score_max_abs": float(np.abs(ref_out[..., 4] - out[..., 4])[same_rows].max(initial=0.0)),
        "reference_detections": sum(len(t) for t in theirs),
        "det_pairs": d.pairs,
        "det_unmatched": d.unmatched,
        "det_min_iou": d.min_iou,
        "det_max_box_abs_px": d.box_max_abs,
        "det_max_score_diff": d.score_max_abs,
        "tolerance_row": row,
        "val_images_scored": r["images"],
        "mAP50": [r["mAP50"], o["mAP50"]],
        "mAP50-95": [r["mAP50-95"], o["mAP50-95"]],
        "max_class_mAP50_drop": class_drop,
    }


def main() -> None:
    configure_environment()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="yolo26,yolov10")
    ap.add_argument("--val-images", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--conf", type=float, default=CONF)
    ap.add_argument("--weights", help="a trained model with a one-to-one head: measure the suite's route")
    ap.add_argument("--data", help="its data.yaml (with --weights)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.weights:
        print(json.dumps(suite_route(args.weights, args.data, args.val_images), indent=2))
        return
    val = load_dataset(synthetic_dataset()).images("val")[: args.val_images]
    doc = {
        f: {
            "deviation": deviation(f, val, args.conf),
            "latency": latency(f, val, args.rounds, args.calls, args.conf),
        }
        for f in args.families.split(",")
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
