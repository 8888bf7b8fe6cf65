"""verify.compare.match_detections: the pairing every detection comparison (suite, report, tune) is
judged on."""

from __future__ import annotations

import numpy as np
import pytest

from detbench import CLASS_NAMES
from detbench.runtimes.postprocess import Detections
from detbench.verify.compare import TOLERANCES, OutputMismatch, assert_detections_match, match_detections

JACKET, SHIRT = CLASS_NAMES.index("jacket"), CLASS_NAMES.index("shirt")


def _dets(boxes, scores, classes) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(classes, np.int64),
        CLASS_NAMES,
    )


# Two overlapping jackets: each candidate box has IoU >= 0.5 with both reference boxes, and the
# higher-scored reference's highest-IoU candidate is the lower-scored one (the crossing a drawn
# 48x57 scene of a YOLO11n showed under openvino-int8).
REF = _dets([[0, 0, 20, 40], [4, 0, 24, 40]], [0.79, 0.27], [JACKET, JACKET])
OUT = _dets([[1, 0, 21, 40], [3, 0, 23, 40]], [0.42, 0.76], [JACKET, JACKET])


def test_overlapping_boxes_of_one_class_are_paired_closest_in_score() -> None:
    m = match_detections(REF, OUT, iou=0.5)
    assert [(r, o) for r, o, _, _ in m.pairs] == [(0, 1), (1, 0)]
    assert max(d for *_, d in m.pairs) == pytest.approx(0.15, abs=1e-6)
    assert not m.unmatched_ref and not m.unmatched_out
    assert_detections_match([REF], [OUT], TOLERANCES["openvino-int8"])


def test_the_most_pairs_come_before_the_closest_scores() -> None:
    """A reference whose only admissible partner is also another's closest in score keeps it: one
    more pair beats a smaller score difference."""
    ref = _dets([[0, 0, 20, 40], [0, 0, 20, 30]], [0.5, 0.9], [JACKET, JACKET])
    out = _dets([[0, 0, 20, 40], [0, 0, 20, 36]], [0.9, 0.5], [JACKET, JACKET])
    # IoU: ref 1 (h 30) with out 0 (h 40) 0.75, with out 1 (h 36) 0.83; ref 0 with both >= 0.9.
    m = match_detections(ref, out, iou=0.8)
    assert len(m.pairs) == 2 and not m.unmatched_ref


def test_a_changed_score_class_or_box_still_fails() -> None:
    tol = TOLERANCES["openvino-int8"]
    for broken in (
        _dets(OUT.xyxy, [0.42, 0.40], OUT.class_ids),  # both far from 0.79
        _dets(OUT.xyxy, OUT.scores, [JACKET, SHIRT]),  # a class changed
        _dets(np.add(OUT.xyxy, [0, 30, 0, 30]), OUT.scores, OUT.class_ids),  # boxes moved off
    ):
        with pytest.raises(OutputMismatch):
            assert_detections_match([REF], [broken], tol)


def test_empty_sides() -> None:
    empty = _dets(np.zeros((0, 4)), [], [])
    m = match_detections(REF, empty, iou=0.5)
    assert (m.pairs, m.unmatched_ref, m.unmatched_out) == ([], [0, 1], [])
    m = match_detections(empty, OUT, iou=0.5)
    assert (m.pairs, m.unmatched_ref, m.unmatched_out) == ([], [], [0, 1])
