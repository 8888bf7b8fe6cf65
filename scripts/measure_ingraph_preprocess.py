"""The most an in-graph u8 -> f32 /255 and HWC -> CHW (OpenVINO PrePostProcessor, an ONNX Runtime
Cast/Div/Transpose prefix) could save per image: ``LeanPreprocessor``'s tail timed alone against the
whole lean preprocess.

    nice -n 19 python scripts/measure_ingraph_preprocess.py [--imgsz 128,640] [--blocks 6] [--threads 1]

The tail is what the graph would take over: split the letterboxed HWC uint8 canvas into planes, widen
them into the float32 input buffer, divide by 255 (the same three calls as ``LeanPreprocessor``; the
script checks that they reproduce its output bit for bit). The graph would still do that work, so the
tail's host time is an upper bound on the saving, not the saving. Inputs: the photo-sized set's first
two photos per size (640x480, 1280x720, 1920x1080) plus bus.jpg and zidane.jpg, decoded once, both
at full size (the ``pillow`` reference decode) and reduced (``opencv-reduced`` at that input size,
what a reduced-decode pipeline hands the letterbox). One ``LeanPreprocessor`` per image, so each keeps
its geometry as a stream of same-sized frames would. Timing: ``perf.timing.BlockPlan`` blocks of the
three callables (whole lean on full-size images, whole lean on reduced images, the tail alone)
alternated A B C C B A ..., each cycling through the images call by call; medians of the kept calls.
OpenCV at ``--threads`` threads. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from detbench.paths import configure_environment


def _cycling(fn: Callable, args: Sequence[tuple]) -> Callable[[], object]:
    it = itertools.cycle(args)
    return lambda: fn(*next(it))


def _tail(canvas: np.ndarray, planes: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """LeanPreprocessor's last three steps on a letterboxed (H, W, 3) uint8 canvas."""
    cv2.split(canvas, list(planes))
    np.copyto(buffer[0], planes)
    np.divide(buffer, np.float32(255), out=buffer)
    return buffer


def main(argv: Sequence[str] | None = None) -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", default="128,640", help="model input sizes, comma-separated")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads")
    args = parser.parse_args(argv)

    from detbench.data.datasets import load_dataset
    from detbench.data.photos import PhotoConfig, photo_dataset, ultralytics_photos
    from detbench.perf.timing import BlockPlan
    from detbench.runtimes.decode import DECODERS, REFERENCE
    from detbench.runtimes.preprocess import LeanPreprocessor, letterbox, preprocess

    cv2.setNumThreads(args.threads)
    paths = [*load_dataset(photo_dataset(PhotoConfig(per_size=2))).images("val"), *ultralytics_photos()]
    plan = BlockPlan(blocks=args.blocks, block_calls=60, discard=10)
    result: dict = {
        "images": [p.name for p in paths],
        "plan": plan.to_dict(),
        "cv2_threads": cv2.getNumThreads(),
        "imgsz": {},
    }
    for imgsz in (int(v) for v in args.imgsz.split(",")):
        inputs = {
            "full": [DECODERS[REFERENCE].decode(p, imgsz).rgb for p in paths],
            "reduced": [DECODERS["opencv-reduced"].decode(p, imgsz).rgb for p in paths],
        }
        whole = {k: [(LeanPreprocessor(), rgb, imgsz) for rgb in rgbs] for k, rgbs in inputs.items()}
        tails = []
        for lean, rgb, _ in whole["full"]:
            canvas = letterbox(rgb, imgsz)[0]
            planes = np.empty((3, imgsz, imgsz), np.uint8)
            buffer = np.empty((1, 3, imgsz, imgsz), np.float32)
            want = preprocess([rgb], imgsz)[0]
            if not all(np.array_equal(g, want) for g in (lean(rgb, imgsz)[0], _tail(canvas, planes, buffer))):
                raise SystemExit("_tail no longer gives LeanPreprocessor's tensor: copy its steps again")
            tails.append((canvas, planes, buffer))
        fns = [
            _cycling(LeanPreprocessor.__call__, whole["full"]),
            _cycling(LeanPreprocessor.__call__, whole["reduced"]),
            _cycling(_tail, tails),
        ]
        full_s, reduced_s, tail_s = plan.steady_state(fns)
        tail_us = float(np.median(tail_s)) * 1e6
        row = {"tail_us": round(tail_us, 1)}
        for key, s in (("full", full_s), ("reduced", reduced_s)):
            us = float(np.median(s)) * 1e6
            row[f"lean_{key}_us"] = round(us, 1)
            row[f"tail_share_of_lean_{key}"] = round(tail_us / us, 3)
        row["reduced_input_shapes"] = sorted({tuple(r.shape[:2]) for r in inputs["reduced"]})
        result["imgsz"][str(imgsz)] = row
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
