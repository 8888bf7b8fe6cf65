"""Measure what a backend's tolerance row and its claim rest on: raw-head deviation from eager
PyTorch, mAP on the val split, and steady-state latency relative to ONNX Runtime fp32.

    python scripts/measure_backends.py [--backends openvino-bf16,openvino-int8] [--threads 1,2]

Deviation: every val image (or --val-images N), the reference image by image, the candidate in
its own batches; box max abs is over anchors whose reference top score reaches the detection
threshold (what the comparator checks for INT8 rows) and over all anchors. Latency: the backends
of one thread count are timed in blocks of ``--calls`` consecutive calls (the first ``--warmup`` of
each dropped), blocks alternated A B C C B A for ``--rounds`` rounds, so drift hits all alike;
each backend's median is divided by onnxruntime's from the same run. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from detbench.data.datasets import load_dataset
from detbench.data.images import load_image
from detbench.model.baseline import resolve_weights, synthetic_dataset
from detbench.model.checkpoint import load_detection_model
from detbench.paths import configure_environment
from detbench.runtimes.backends import REGISTRY, BaseBackend
from detbench.runtimes.postprocess import CONF, postprocess
from detbench.runtimes.preprocess import preprocess
from detbench.runtimes.workbench import Workbench
from detbench.verify.accuracy import evaluate
from detbench.verify.compare import deviation, match_detections


def raw_deviation(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    dev = deviation(ref, out)
    live = ref[:, 4:].max(axis=1) >= CONF  # (N, A)
    box = np.abs(out[:, :4].astype(np.float64) - ref[:, :4])
    live_box = float(np.where(live[:, None, :], box, 0.0).max(initial=0.0))
    return {
        "box_max_abs_px": dev.box_max_abs,
        "box_max_abs_live_px": live_box,
        "score_max_abs": dev.score_max_abs,
    }


def detection_agreement(ref_raw: np.ndarray, raw: np.ndarray, infos: list, names: tuple) -> dict[str, float]:
    """After NMS, matched at IoU >= 0.5 and same class: the lowest matched IoU, the largest score
    difference, and the fraction of detections (both sides) left unmatched."""
    ref = postprocess(ref_raw, infos, names)
    out = postprocess(raw, infos, names)
    ious, diffs, unmatched, total = [], [], 0, 0
    for r, o in zip(ref, out):
        m = match_detections(r, o, iou=0.5)
        ious += [p[2] for p in m.pairs]
        diffs += [p[3] for p in m.pairs]
        unmatched += len(m.unmatched_ref) + len(m.unmatched_out)
        total += len(r) + len(o)
    return {
        "min_matched_iou": float(min(ious, default=1.0)),
        "max_score_diff": float(max(diffs, default=0.0)),
        "unmatched_frac": unmatched / max(total, 1),
    }


def worst_class_drop(ref: dict, out: dict) -> dict:
    drops = {
        k: v["mAP50"] - (out["per_class"][k]["mAP50"] or 0.0)
        for k, v in ref["per_class"].items()
        if v["mAP50"] is not None
    }
    worst = max(drops, key=drops.get)
    return {"class": worst, "mAP50_drop": drops[worst]}


def block_latency(
    backends: dict[str, BaseBackend], x: np.ndarray, rounds: int, calls: int, warmup: int
) -> dict:
    samples: dict[str, list[float]] = {n: [] for n in backends}
    order = list(backends)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            b = backends[name]
            for i in range(warmup + calls):
                t = time.perf_counter()
                b.run(x)
                if i >= warmup:
                    samples[name].append((time.perf_counter() - t) * 1e3)
    med = {n: float(np.median(s)) for n, s in samples.items()}
    return {n: {"p50_ms": med[n], "vs_onnxruntime": med[n] / med["onnxruntime"]} for n in backends}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    new = "openvino-bf16,openvino-int8,torchscript-frozen,pytorch-compile,onnxruntime-int8"
    ap.add_argument("--backends", default=new)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--val-images", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args(argv)
    configure_environment()
    names = [n for n in args.backends.split(",") if n]
    weights = resolve_weights(None)
    ds = load_dataset(synthetic_dataset())
    _, info = load_detection_model(weights)

    def bench(threads: int) -> Workbench:
        return Workbench.from_options(weights, threads=threads)

    out: dict = {"backends": names, "val_images": args.val_images or len(ds.images("val"))}
    wb = bench(1)
    ref = wb.load("pytorch")
    paths = ds.images("val")[: args.val_images]
    x, infos = preprocess([load_image(p) for p in paths], info.imgsz)
    ref_raw = ref.run_batched(x, batch=1)
    out["deviation"], out["detections"], out["accuracy"] = {}, {}, {}
    ref_acc = (
        None if args.skip_accuracy else evaluate(ref, ds, imgsz=info.imgsz, limit=args.val_images, batch=1)
    )

    def skipped(name: str) -> str | None:
        """Why this script does not measure ``name``: it compares raw heads, which end2end has none of."""
        cls = REGISTRY[name]
        if cls.output != "raw":
            return f"{name} has no raw head: scripts/measure_end2end.py measures it"
        return cls.unavailable()

    for name in names:
        if reason := skipped(name):
            out["deviation"][name] = {"skipped": reason}
            continue
        b = wb.load(name)
        raw = b.run_batched(x)
        out["deviation"][name] = raw_deviation(ref_raw, raw)
        out["detections"][name] = detection_agreement(ref_raw, raw, infos, info.names)
        if ref_acc is not None:
            acc = evaluate(b, ds, imgsz=info.imgsz, limit=args.val_images).to_dict()
            out["accuracy"][name] = {k: acc[k] for k in ("mAP50", "mAP50-95")}
            out["accuracy"][name]["worst_class"] = worst_class_drop(ref_acc.to_dict(), acc)
        print(name, out["deviation"][name], out["detections"][name], out["accuracy"].get(name), flush=True)
    if ref_acc is not None:
        out["accuracy"]["pytorch"] = {k: ref_acc.to_dict()[k] for k in ("mAP50", "mAP50-95")}
        for name in ("onnxruntime", "openvino"):
            acc = evaluate(wb.load(name), ds, imgsz=info.imgsz, limit=args.val_images).to_dict()
            out["accuracy"][name] = {k: acc[k] for k in ("mAP50", "mAP50-95")}
    x1 = x[:1]
    out["latency"] = {}
    for threads in (int(t) for t in args.threads.split(",") if t):
        wbt = bench(threads)
        timed = ["onnxruntime", *[n for n in names if n != "onnxruntime" and not skipped(n)]]
        loaded = {n: wbt.load(n) for n in timed}
        out["latency"][threads] = block_latency(loaded, x1, args.rounds, args.calls, args.warmup)
        print(threads, json.dumps(out["latency"][threads]), flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
