"""Raw head output to detections: ultralytics' own NMS, boxes mapped back to the original image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detbench.runtimes.preprocess import LetterboxInfo, unletterbox_boxes

CONF = 0.25  # ultralytics' predict defaults, so detections match YOLO(...).predict()
IOU = 0.7
MAX_DET = 300


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


def postprocess(
    raw: np.ndarray,
    infos: Sequence[LetterboxInfo],
    names: Sequence[str],
    *,
    conf: float = CONF,
    iou: float = IOU,
    max_det: int = MAX_DET,
) -> list[Detections]:
    if raw.ndim != 3 or raw.shape[1] != 4 + len(names):
        raise ValueError(
            f"raw head shape {raw.shape} does not fit {len(names)} classes "
            f"(expected (N, {4 + len(names)}, anchors))"
        )
    if len(infos) != raw.shape[0]:
        raise ValueError(f"{len(infos)} letterbox infos for a batch of {raw.shape[0]}")
    dets = []
    for det, info in zip(nms(raw, conf=conf, iou=iou, max_det=max_det), infos):
        boxes = unletterbox_boxes(det[:, :4].astype(np.float32), info)
        dets.append(
            Detections(
                xyxy=boxes.astype(np.float32),
                scores=det[:, 4].astype(np.float32),
                class_ids=det[:, 5].astype(np.int64),
                names=tuple(names),
            )
        )
    return dets
