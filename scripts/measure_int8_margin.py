"""Measure how far INT8 moves detection scores near the confidence threshold (the INT8 unmatched margin).

    python scripts/measure_int8_margin.py [--images N] [--backend onnxruntime-int8|openvino-int8]
    python scripts/measure_int8_margin.py --drawn 500 [--backend ...]   # the suite's drawn scenes

A detection may go unmatched between eager PyTorch and INT8 only because INT8 moved its score across
the threshold; it can do that only if the score moved by at least its distance to the threshold. So
we postprocess both at a low threshold, match same-class boxes (IoU >= the INT8 row's det_iou) and
print the score shift of every matched pair whose reference score lies within 0.15 of the threshold:
its maximum (x 1.5, for images not in this split) is ``det_threshold_margin`` in verify/compare.py.

``--drawn N``: instead, N scenes drawn as ``test_detections_match_pytorch`` draws them
(``testing.strategies.suite_scenes``; seeded, so a rerun draws the same),
each preprocessed alone and postprocessed at the suite's threshold, as the test does; prints the
matched pairs' score differences (p50, p99, max) and the worst scenes: what ``det_score`` of the
INT8 rows must hold on this CPU.
"""

from __future__ import annotations

import argparse

import numpy as np

from detbench.data.datasets import load_dataset
from detbench.data.images import load_image
from detbench.model.baseline import resolve_weights, synthetic_dataset
from detbench.model.checkpoint import load_detection_model
from detbench.paths import configure_environment
from detbench.runtimes.postprocess import CONF, postprocess
from detbench.runtimes.preprocess import preprocess
from detbench.runtimes.workbench import Workbench
from detbench.verify.compare import TOLERANCES, match_detections

LOW_CONF = 0.05
WINDOW = 0.15


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=None, help="first N val images (default: all)")
    ap.add_argument(
        "--backend",
        default="onnxruntime-int8",
        choices=[n for n, t in TOLERANCES.items() if n.endswith("int8")],
        help="the INT8 backend to measure (default: onnxruntime-int8)",
    )
    ap.add_argument("--drawn", type=int, help="N drawn scenes instead of the val images")
    args = ap.parse_args(argv)
    if args.drawn:
        return drawn(args.backend, args.drawn)
    weights = resolve_weights(None)
    info = load_detection_model(weights)[1]
    ds = load_dataset(synthetic_dataset())
    bench = Workbench.from_options(weights, threads=1)
    ref, q = bench.load("pytorch"), bench.load(args.backend)
    tol = TOLERANCES[args.backend]
    shifts, near = [], []
    images = ds.images("val")[: args.images]
    for start in range(0, len(images), 8):
        x, infos = preprocess([load_image(p) for p in images[start : start + 8]], info.imgsz)
        dr = postprocess(ref.run(x), infos, info.names, conf=LOW_CONF)
        dq = postprocess(q.run(x), infos, info.names, conf=LOW_CONF)
        for r, o in zip(dr, dq):
            for ri, _oi, _iou, ds_ in match_detections(r, o, iou=tol.det_iou).pairs:
                shifts.append(ds_)
                if abs(float(r.scores[ri]) - CONF) <= WINDOW:
                    near.append(ds_)
    near_arr, all_arr = np.array(near), np.array(shifts)
    print(
        f"{args.backend}: {len(images)} val images, {len(all_arr)} matched pairs at conf {LOW_CONF}, "
        f"IoU >= {tol.det_iou}"
    )
    print(
        f"all pairs: |score shift| p50 {np.median(all_arr):.4f}, p99 {np.percentile(all_arr, 99):.4f}, "
        f"max {all_arr.max():.4f}"
    )
    print(
        f"{len(near_arr)} pairs within {WINDOW} of the threshold {CONF}: p50 {np.median(near_arr):.4f}, "
        f"p99 {np.percentile(near_arr, 99):.4f}, max {near_arr.max():.4f}"
    )
    print(f"suggested det_threshold_margin = 1.5 x max = {1.5 * near_arr.max():.3f}")
    return 0


def drawn(backend: str, n: int) -> int:
    """Score differences of matched pairs on ``n`` drawn scenes, one image per call, at ``CONF``."""
    from hypothesis import HealthCheck, Phase, given, settings

    from detbench.perf.machine import cpu_model
    from detbench.testing.strategies import suite_scenes
    from detbench.verify.reference import reference_detections

    weights = resolve_weights(None)
    info = load_detection_model(weights)[1]
    bench = Workbench.from_options(weights, threads=1)
    ref, q = bench.load("pytorch"), bench.load(backend)
    tol = TOLERANCES[backend]
    diffs: list[float] = []
    worst: list[tuple[float, str]] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(suite_scenes())
    def one(image) -> None:
        x, infos = preprocess([image], info.imgsz)
        (r,) = reference_detections(ref.run_batched(x, batch=1), infos, info.names, output=ref.output)
        (o,) = postprocess(q.run(x), infos, info.names)
        for ri, oi, _iou, d in match_detections(r, o, iou=tol.det_iou).pairs:
            diffs.append(d)
            worst.append(
                (
                    d,
                    f"{image.mode} {image.size}: {r.names[r.class_ids[ri]]} "
                    f"{r.scores[ri]:.3f} vs {o.scores[oi]:.3f}",
                )
            )

    one()
    arr = np.array(diffs)
    print(
        f"{backend} on {cpu_model()}: {n} drawn scenes, {len(arr)} matched pairs "
        f"(conf {CONF}, IoU >= {tol.det_iou})"
    )
    print(
        f"|score diff| p50 {np.median(arr):.4f}, p99 {np.percentile(arr, 99):.4f}, max {arr.max():.4f}; "
        f"the row's det_score {tol.det_score}; over it: {int((arr > tol.det_score).sum())}"
    )
    for d, text in sorted(worst, reverse=True)[:5]:
        print(f"  {d:.4f}  {text}")
    return 0


if __name__ == "__main__":
    configure_environment()
    raise SystemExit(main())
