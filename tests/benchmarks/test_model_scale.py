"""Latency across model scales (``--detbench-scales``, default n) at 128 px, batch 1.

Untrained yolov8<scale> checkpoints with the reference's 10 classes: latency does not depend on
the weights, so nothing is trained or downloaded. fp32 backends only (INT8 needs a trained model
to calibrate). Each scale is its own group, backends side by side.
"""

from __future__ import annotations

from .conftest import SCALE_IMGSZ, anchors


def test_latency_scale_128_batch1(timed, benchmark, scale, scale_backend) -> None:
    """One image through an untrained yolov8<scale>; only backend.run is timed."""
    from detbench import CLASS_NAMES

    benchmark.group = f"yolov8{scale}-untrained-{SCALE_IMGSZ}-batch1"
    benchmark.extra_info["model"] = f"yolov8{scale} (untrained)"
    x = _input(SCALE_IMGSZ)
    out = timed(scale_backend, x)
    assert out.shape == (1, 4 + len(CLASS_NAMES), anchors(SCALE_IMGSZ))


def _input(imgsz: int):
    """A synthetic scene: this workload needs no dataset on disk."""
    from detbench.data.synth import make_scene
    from detbench.runtimes.preprocess import preprocess

    return preprocess([make_scene(0, "val", 0, imgsz)[0]], imgsz)[0]
