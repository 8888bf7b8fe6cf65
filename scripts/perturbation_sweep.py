"""Smallest single-weight perturbation of the ONNX model that the equivalence checks catch.

    python scripts/perturbation_sweep.py [--weights W] [--images 16]

For a few Conv layers, shifts one weight by decreasing amounts and reports whether the raw-head
comparison (onnxruntime tolerance) and the detection comparison flag it on the first val images.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from detbench.data.datasets import load_dataset
from detbench.data.images import load_image
from detbench.model.baseline import resolve_weights, synthetic_dataset
from detbench.model.checkpoint import load_detection_model
from detbench.paths import configure_environment
from detbench.runtimes.backends import create
from detbench.runtimes.postprocess import postprocess
from detbench.runtimes.preprocess import preprocess
from detbench.runtimes.workbench import Workbench
from detbench.verify.compare import TOLERANCES, OutputMismatch, assert_detections_match, assert_outputs_close
from detbench.verify.perturb import perturb_conv_weight

NODES = [
    "/model.22/cv3.0/cv3.0.2/Conv",
    "/model.22/cv2.0/cv2.0.2/Conv",
    "/model.6/m.0/cv1/conv/Conv",
    "/model.0/conv/Conv",
]
DELTAS = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]


def caught(fn) -> bool:
    try:
        fn()
    except OutputMismatch:
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--images", type=int, default=16)
    args = ap.parse_args(argv)
    weights = resolve_weights(args.weights)
    _, info = load_detection_model(weights)
    ds = load_dataset(synthetic_dataset())
    bench = Workbench.from_options(weights)
    ref = bench.load("pytorch")
    x, infos = preprocess([load_image(p) for p in ds.images("val")[: args.images]], info.imgsz)
    r = ref.run(x)
    ref_det = postprocess(r, infos, info.names)
    tol = TOLERANCES["onnxruntime"]
    print(f"{'node':<34} {'delta':>8}  raw-head  detections")
    with tempfile.TemporaryDirectory() as tmp:
        for node in NODES:
            smallest = None
            for delta in DELTAS:
                path = Path(tmp) / "p.onnx"
                perturb_conv_weight(bench.artifact("onnxruntime"), path, node=node, delta=delta)
                b = create("onnxruntime")
                b.load(path)
                o = b.run(x)
                raw = caught(lambda o=o: assert_outputs_close(r, o, tol))
                det = caught(
                    lambda o=o: assert_detections_match(ref_det, postprocess(o, infos, info.names), tol)
                )
                verdicts = ["caught" if hit else "missed" for hit in (raw, det)]
                print(f"{node:<34} {delta:>8.0e}  {verdicts[0]:>8}  {verdicts[1]:>10}")
                if raw:
                    smallest = delta
            print(f"  smallest delta caught by the raw-head check: {smallest}")
    return 0


if __name__ == "__main__":
    configure_environment()
    raise SystemExit(main())
