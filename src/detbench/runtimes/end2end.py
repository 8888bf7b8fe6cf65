"""NMS-free (end2end) output to detections: the one-to-one head of YOLO26 and YOLOv10 already ranks.

Its export returns ``(N, K, 6)`` rows ``x1, y1, x2, y2, score, class`` in model-input pixels, sorted
by score, ``K = min(300, anchors)`` (ultralytics ``Detect.postprocess``: top-k over anchors x classes,
no NMS). What is left is ultralytics' ``non_max_suppression`` end2end branch (score strictly above
``conf``, the first ``max_det``) and its ``scale_boxes`` (letterbox undone, clipped).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detbench.runtimes.postprocess import CONF, IOU, MAX_DET, Detections, detections_from_rows, postprocess
from detbench.runtimes.preprocess import LetterboxInfo


def postprocess_end2end(
    out: np.ndarray,
    infos: Sequence[LetterboxInfo],
    names: Sequence[str],
    *,
    conf: float = CONF,
    max_det: int = MAX_DET,
) -> list[Detections]:
    """Detections of an end2end batch, in original-image pixels; no NMS (the head has none to need)."""
    if out.ndim != 3 or out.shape[2] != 6:
        raise ValueError(f"end2end output shape {out.shape} is not (N, detections, 6)")
    if len(infos) != out.shape[0]:
        raise ValueError(f"{len(infos)} letterbox infos for a batch of {out.shape[0]}")
    kept = [rows[rows[:, 4] > conf][:max_det] for rows in out]  # strict, as ultralytics' end2end branch
    classes = np.concatenate([k[:, 5] for k in kept] or [np.zeros(0)]).astype(np.int64)
    if len(classes) and (classes.min() < 0 or classes.max() >= len(names)):
        raise ValueError(f"end2end class index {int(classes.max())} outside the {len(names)} classes")
    return detections_from_rows(kept, infos, names)


def is_end2end(backend: object) -> bool:
    """The backend's output is already detections (the end2end export): postprocess without NMS."""
    return getattr(backend, "output", "raw") == "detections"


def to_detections(
    out: np.ndarray,
    infos: Sequence[LetterboxInfo],
    names: Sequence[str],
    *,
    output: str,
    conf: float = CONF,
    iou: float = IOU,
    max_det: int = MAX_DET,
) -> list[Detections]:
    """A backend's output as detections by its own route (``output``: the backend's ``output``):
    ultralytics' NMS for a raw head, :func:`postprocess_end2end` for end2end rows."""
    if output == "detections":
        return postprocess_end2end(out, infos, names, conf=conf, max_det=max_det)
    if output != "raw":
        raise ValueError(f"unknown backend output {output!r}: 'raw' or 'detections'")
    return postprocess(out, infos, names, conf=conf, iou=iou, max_det=max_det)
