"""The reference's detections, by ultralytics' own code, for either kind of backend output.

A raw head goes through ``runtimes.postprocess.postprocess`` (ultralytics' NMS), as every raw-head
backend's reference always has. End2end rows ``(N, K, 6)`` (the reference of an end2end backend is the
model's own one-to-one forward, ``runtimes.backends.PyTorchEnd2EndBackend``) go through what
``YOLO(weights).predict()`` runs after that forward: ultralytics' ``non_max_suppression`` end2end
branch (score strictly above ``conf``, the first ``max_det``) and ``ops.scale_boxes``. Deliberately not
``runtimes.end2end.postprocess_end2end``: that is the candidate's postprocess, which this checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detbench.runtimes.end2end import to_detections
from detbench.runtimes.postprocess import CONF, IOU, MAX_DET, Detections, ultralytics_nms
from detbench.runtimes.preprocess import LetterboxInfo


def reference_detections(
    out: np.ndarray,
    infos: Sequence[LetterboxInfo],
    names: Sequence[str],
    *,
    output: str,
    conf: float = CONF,
    iou: float = IOU,
    max_det: int = MAX_DET,
) -> list[Detections]:
    """The reference's output ``out`` (its backend's ``output``: "raw" or "detections") as detections
    in original-image pixels, by ultralytics' own postprocessing."""
    if output != "detections":  # a raw head: the NMS every backend's reference has always had
        return to_detections(out, infos, names, output=output, conf=conf, iou=iou, max_det=max_det)
    import torch
    from ultralytics.utils import ops

    rows = ultralytics_nms()(
        torch.from_numpy(np.ascontiguousarray(out)),
        conf_thres=conf,
        iou_thres=iou,
        max_det=max_det,
        end2end=True,
    )
    dets = []
    for r, info in zip(rows, infos):
        # A letterbox is undone the way predict undoes it, from the two shapes alone; another mode
        # (a plain resize) needs its own gain and no padding, which only the info knows.
        h0, w0 = info.orig_shape
        rh, rw = info.resized_shape
        ratio_pad = None if info.mode == "letterbox" else ((rh / h0, rw / w0), info.pad)
        boxes = ops.scale_boxes(info.new_shape, r[:, :4].clone(), info.orig_shape, ratio_pad=ratio_pad)
        dets.append(
            Detections(
                xyxy=boxes.numpy().astype(np.float32),
                scores=r[:, 4].numpy().astype(np.float32),
                class_ids=r[:, 5].numpy().astype(np.int64),
                names=tuple(names),
            )
        )
    return dets
