"""A pytest plugin (``-p _support.broken_variants``) that registers two deliberately broken pipeline
variants claiming identity, so a run of ``detbench.suite.test_pipelines`` shows the suite failing on
them (``tests/test_suite_pipelines.py``); they are unregistered when the session ends. Hypothesis
keeps the loaded profile's examples but stops at the first counterexample (no shrinking).

- preprocess ``ceil-pad``: the letterbox padding split as ``ceil(d)`` before and the rest after,
  where ultralytics rounds ``round(d - 0.1)``: content one pixel off whenever the padding is odd.
  (``floor(d)`` would not do: for the half-integer ``d`` a letterbox has, it equals ``round(d - 0.1)``.)
- postprocess ``no-class-offset``: the NumPy NMS without the per-class box offset, so boxes of
  different classes suppress each other.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import Phase, settings

from detbench.runtimes import pipeline
from detbench.runtimes.pipeline import PipelineVariant
from detbench.runtimes.postprocess import CONF, IOU, MAX_DET, detections_from_rows, numpy_nms
from detbench.runtimes.preprocess import (
    PAD_VALUE,
    LetterboxInfo,
    _as_rgb_array,
    _target,
    letterbox_geometry,
)

PREPROCESS = "ceil-pad"
POSTPROCESS = "no-class-offset"


def letterbox_ceil_pad(image, imgsz=128, mode="letterbox"):
    """The reference letterbox but for the padding's split: ``ceil`` of half the padding on top/left."""
    if mode != "letterbox":
        return pipeline.reference("preprocess").make()(image, imgsz, mode)
    rgb = _as_rgb_array(image, 0)
    (h, w), (th, tw) = rgb.shape[:2], _target(imgsz)
    r, (new_h, new_w), _ = letterbox_geometry((h, w), (th, tw))
    top, left = math.ceil((th - new_h) / 2), math.ceil((tw - new_w) / 2)
    canvas = np.full((th, tw, 3), PAD_VALUE, np.uint8)
    same = (h, w) == (new_h, new_w)
    canvas[top : top + new_h, left : left + new_w] = (
        rgb if same else cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    x = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    return x, LetterboxInfo((h, w), (th, tw), (r, r), (left, top), "letterbox")


def postprocess_no_class_offset(raw, infos, names, *, conf=CONF, iou=IOU, max_det=MAX_DET):
    """``postprocess_numpy`` with class-agnostic NMS: the class offset dropped."""
    rows = numpy_nms(raw, conf=conf, iou=iou, max_det=max_det, agnostic=True)
    return detections_from_rows(rows, infos, names)


BROKEN = (
    PipelineVariant("preprocess", PREPROCESS, "broken: pad split by ceil", True, lambda: letterbox_ceil_pad),
    PipelineVariant(
        "postprocess",
        POSTPROCESS,
        "broken: NMS without class offsets",
        True,
        lambda: postprocess_no_class_offset,
    ),
)


PROFILE = "broken-variants"


@pytest.hookimpl(trylast=True)  # after detbench's plugin has loaded HYPOTHESIS_PROFILE
def pytest_configure(config: pytest.Config) -> None:
    for variant in BROKEN:
        pipeline.register(variant)
    # The loaded profile's examples, but the first counterexample is the answer: no shrinking, and one
    # error per test rather than a group of the distinct ones (as tests/test_pipeline.py's REJECTS).
    settings.register_profile(
        PROFILE,
        parent=settings.default,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        report_multiple_bugs=False,
    )
    settings.load_profile(PROFILE)


def pytest_unconfigure(config: pytest.Config) -> None:
    for variant in BROKEN:
        pipeline.unregister(variant.stage, variant.name)
