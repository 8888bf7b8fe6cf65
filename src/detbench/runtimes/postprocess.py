"""Raw head output to detections: ultralytics' own NMS (the reference) or a NumPy NMS with the same
semantics and arithmetic (torch-free), boxes mapped back to the original image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detbench.runtimes.preprocess import LetterboxInfo, unletterbox_in_place

CONF = 0.25  # ultralytics' predict defaults, so detections match YOLO(...).predict()
IOU = 0.7
MAX_DET = 300
MAX_NMS = 30000  # ultralytics' non_max_suppression defaults: candidates kept before NMS,
MAX_WH = 7680  # and the per-class coordinate offset that keeps classes apart
# Up to this many candidates NMS computes every pairwise overlap at once (predict's usual case here:
# ~22 at conf 0.25 on the 128 px val heads); above it, per kept box. At 64 the matrix costs about what
# the loop spends on two kept boxes, and beyond it grows fast (docs/measurements.md).
MATRIX_MAX = 64


@dataclass(frozen=True)
class Detections:
    """Detections of one image, in original-image pixel coordinates."""

    xyxy: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int64
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def class_names(self) -> list[str]:
        return [self.names[int(c)] for c in self.class_ids]

    def to_list(self) -> list[dict]:
        return [
            {
                "class_id": int(c),
                "class_name": self.names[int(c)],
                "score": round(float(s), 5),
                "xyxy": [round(float(v), 2) for v in box],
            }
            for box, s, c in zip(self.xyxy, self.scores, self.class_ids)
        ]


def ultralytics_nms() -> Any:
    """ultralytics' ``non_max_suppression`` on torchvision's C++ NMS kernel, which ultralytics uses
    only when torchvision is already imported (else a Python loop: 3x slower mAP scoring here, same
    detections)."""
    import torchvision  # noqa: F401
    from ultralytics.utils.nms import non_max_suppression

    return non_max_suppression


def nms(raw: np.ndarray, *, conf: float = CONF, iou: float = IOU, max_det: int = MAX_DET) -> list[np.ndarray]:
    """ultralytics' NMS on a raw head batch; returns per image (K, 6) [x1, y1, x2, y2, score, cls]
    in model-input pixels."""
    import torch

    non_max_suppression = ultralytics_nms()
    # max_time_img: ultralytics stops NMS after a time limit; on a loaded machine that would make
    # results depend on load. Effectively no limit here.
    out = non_max_suppression(
        torch.from_numpy(np.ascontiguousarray(raw)),
        conf_thres=conf,
        iou_thres=iou,
        max_det=max_det,
        max_time_img=1e6,
    )
    return [o.numpy() for o in out]


def _greedy_keep(boxes: np.ndarray, scores: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Indices torchvision's CPU ``nms`` keeps, the first ``max_det`` of them.

    The same float32 operations in the same order as its kernel (areas, clamped intersection,
    ``inter / (area_i + area_j - inter)``), scores sorted stably in descending order, and the overlap
    compared in float64 with the threshold as the kernel compares a float with a double; a NaN
    overlap (two empty boxes) suppresses nothing there, so nothing here either. Up to
    ``MATRIX_MAX`` boxes every overlap is computed at once (:func:`_keep_by_matrix`), above it one
    kept box at a time (:func:`_keep_by_loop`): the same keeps either way.
    """
    order = np.argsort(-scores, kind="stable")
    xyxy = np.ascontiguousarray(boxes[order].T)
    x1, y1, x2, y2 = xyxy
    areas = (x2 - x1) * (y2 - y1)
    keep_by = _keep_by_matrix if len(order) <= MATRIX_MAX else _keep_by_loop
    return order[np.asarray(keep_by(xyxy, areas, iou, max_det), dtype=np.int64)]


def _keep_by_loop(xyxy: np.ndarray, areas: np.ndarray, iou: float, max_det: int) -> list[int]:
    """Greedy keeps over (4, K) x1, y1, x2, y2 sorted by score: each kept box's overlaps with the
    boxes still left."""
    x1, y1, x2, y2 = xyxy
    zero = xyxy.dtype.type(0)
    left = np.arange(xyxy.shape[1])
    keep: list[int] = []
    while left.size and len(keep) < max_det:
        i, rest = left[0], left[1:]
        keep.append(int(i))
        w = np.maximum(zero, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(zero, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 of empty boxes: NaN, as in the kernel
            overlap = inter / (areas[i] + areas[rest] - inter)
        left = rest[~(overlap.astype(np.float64) > np.float64(iou))]
    return keep


def _keep_by_matrix(xyxy: np.ndarray, areas: np.ndarray, iou: float, max_det: int) -> list[int]:
    """:func:`_keep_by_loop`'s keeps from all pairwise overlaps at once, each element computed by
    the same operations in the same order (row ``i`` is the loop's kept box), then a greedy pass over
    one Python integer bit mask per row: ten NumPy calls in all instead of ten per kept box."""
    # Width and height side by side, (2, K, K): max(0, min(x2_i, x2_j) - max(x1_i, x1_j)) and in y.
    lo = np.maximum(xyxy[:2, :, None], xyxy[:2, None, :])
    wh = np.minimum(xyxy[2:, :, None], xyxy[2:, None, :])
    wh -= lo
    np.maximum(xyxy.dtype.type(0), wh, out=wh)
    inter = wh[0] * wh[1]
    overlap = areas[:, None] + areas
    overlap -= inter
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 of empty boxes: NaN, as in the kernel
        np.divide(inter, overlap, out=overlap)
    rows = np.packbits(overlap.astype(np.float64) > np.float64(iou), axis=1, bitorder="little")
    data, width = rows.tobytes(), rows.shape[1]
    keep: list[int] = []
    suppressed = 0  # bit j set: box j overlaps a kept box above the threshold
    for i in range(xyxy.shape[1]):
        if suppressed >> i & 1:
            continue
        if len(keep) >= max_det:
            break
        keep.append(i)
        # Bits of boxes before i are set too (and i's own), but those are decided already.
        suppressed |= int.from_bytes(data[i * width : (i + 1) * width], "little")
    return keep


def numpy_nms(
    raw: np.ndarray,
    *,
    conf: float = CONF,
    iou: float = IOU,
    max_det: int = MAX_DET,
    max_nms: int = MAX_NMS,
    max_wh: int = MAX_WH,
    agnostic: bool = False,
) -> list[np.ndarray]:
    """:func:`nms` without torch: per image (K, 6) [x1, y1, x2, y2, score, cls] in model-input pixels,
    identical to ultralytics' ``non_max_suppression`` on torchvision's kernel for float32 (and
    float64) heads: candidates by top class score ``> conf``, best class per box (first on ties),
    class-aware NMS through a ``cls * max_wh`` box offset (``agnostic`` drops it), ``max_det`` kept.

    Above ``max_nms`` candidates both keep the highest scores, but ultralytics' unstable sort may
    break a tie at the cut differently; no head of an ``imgsz`` below about 1200 has that many anchors.
    A head of exactly 6 anchors (``imgsz`` 16) is one ultralytics takes for an end-to-end (N, K, 6)
    output and only thresholds; here it gets NMS like any other.
    """
    raw = np.asarray(raw)
    if raw.ndim != 3 or raw.shape[1] < 5:
        raise ValueError(f"raw head: expected (N, 4 + classes, anchors), got shape {raw.shape}")
    if raw.dtype not in (np.float32, np.float64):
        raise ValueError(f"raw head: expected float32 or float64, got {raw.dtype}")
    if not (0 <= conf <= 1 and 0 <= iou <= 1):
        raise ValueError(f"conf and iou must lie within 0..1, got conf={conf!r}, iou={iou!r}")
    # A Python float, so the comparison runs in the head's dtype as torch's does with a scalar.
    conf = float(conf)
    out = []
    for pred in raw:
        best = pred[4:].max(axis=0)
        idx = np.flatnonzero(best > conf)
        # A candidate's top class score is its row's score (ultralytics thresholds it twice, the same
        # way), and its first maximum its class; a NaN score fails the threshold.
        x = pred[:, idx]
        xy, wh = x[:2], x[2:4] / 2
        det = np.empty((len(idx), 6), raw.dtype)
        det[:, :2] = (xy - wh).T
        det[:, 2:4] = (xy + wh).T
        det[:, 4] = best[idx]
        det[:, 5] = x[4:].argmax(axis=0)
        if len(det) > max_nms:
            det = det[np.argsort(-det[:, 4], kind="stable")[:max_nms]]
        if not len(det):
            out.append(np.zeros((0, 6), dtype=np.float32))  # ultralytics' empty result is float32 always
            continue
        boxes = det[:, :4] + det[:, 5:6] * (0 if agnostic else max_wh)
        out.append(det[_greedy_keep(boxes, det[:, 4], iou, max_det)])
    return out


def _check_head(raw: np.ndarray, infos: Sequence[LetterboxInfo], names: Sequence[str]) -> None:
    if raw.ndim != 3 or raw.shape[1] != 4 + len(names):
        raise ValueError(
            f"raw head shape {raw.shape} does not fit {len(names)} classes "
            f"(expected (N, {4 + len(names)}, anchors))"
        )
    if len(infos) != raw.shape[0]:
        raise ValueError(f"{len(infos)} letterbox infos for a batch of {raw.shape[0]}")


def postprocess(
    raw: np.ndarray,
    infos: Sequence[LetterboxInfo],
    names: Sequence[str],
    *,
    conf: float = CONF,
    iou: float = IOU,
    max_det: int = MAX_DET,
) -> list[Detections]:
    """Detections per image through ultralytics' NMS: the reference postprocess."""
    _check_head(raw, infos, names)
    return detections_from_rows(nms(raw, conf=conf, iou=iou, max_det=max_det), infos, names)


def postprocess_numpy(
    raw: np.ndarray,
    infos: Sequence[LetterboxInfo],
    names: Sequence[str],
    *,
    conf: float = CONF,
    iou: float = IOU,
    max_det: int = MAX_DET,
) -> list[Detections]:
    """:func:`postprocess` through :func:`numpy_nms`: the same detections without importing torch."""
    _check_head(raw, infos, names)
    return detections_from_rows(numpy_nms(raw, conf=conf, iou=iou, max_det=max_det), infos, names)


def detections_from_rows(
    per_image: Sequence[np.ndarray], infos: Sequence[LetterboxInfo], names: Sequence[str]
) -> list[Detections]:
    """Per image, ``(K, 6)`` rows x1, y1, x2, y2, score, class in model-input pixels (what NMS keeps,
    or what an end2end head returns) as ``Detections`` in original-image pixels."""
    dets = []
    class_names = tuple(names)
    for det, info in zip(per_image, infos):
        # astype copies, so the mapping may run in place on the copy.
        boxes = unletterbox_in_place(det[:, :4].astype(np.float32), info)
        dets.append(
            Detections(
                xyxy=boxes,
                scores=det[:, 4].astype(np.float32),
                class_ids=det[:, 5].astype(np.int64),
                names=class_names,
            )
        )
    return dets
