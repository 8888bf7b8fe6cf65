"""Accuracy through any backend, scored by ultralytics' own metric code (no hand-written AP).

Images go through our preprocessing and the backend; NMS uses ultralytics' validation settings
(conf 0.001, IoU 0.7, multi-label), and a backend whose output is end2end detections goes through
the same function's end2end branch (no NMS: rows above conf 0.001, the first 300); matching is
``BaseValidator.match_predictions`` and scoring
``DetMetrics`` / ``ap_per_class`` — the same code ``YOLO(...).val()`` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from detbench.data.datasets import Dataset
from detbench.model.train import per_class_metrics
from detbench.runtimes.backends import BaseBackend
from detbench.runtimes.decode import DECODERS, Decoded, DecodeVariant
from detbench.runtimes.end2end import is_end2end
from detbench.runtimes.preprocess import preprocess, unletterbox_boxes

VAL_CONF = 0.001
VAL_IOU = 0.7
VAL_MAX_DET = 300


@dataclass(frozen=True)
class AccuracyResult:
    mAP50: float
    mAP50_95: float
    precision: float
    recall: float
    per_class: dict[str, dict[str, float | None]]  # None: class absent from the split
    images: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mAP50-95"] = d.pop("mAP50_95")
        return d


def read_labels(label: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLO label file to (classes, xyxy in pixels); a missing file is a background image."""
    if not label.is_file():
        return np.zeros(0), np.zeros((0, 4))
    rows = np.array(
        [line.split() for line in label.read_text().splitlines() if line.strip()], dtype=np.float64
    )
    if rows.size == 0:
        return np.zeros(0), np.zeros((0, 4))
    cls, (cx, cy, w, h) = rows[:, 0], rows[:, 1:5].T
    xyxy = np.stack(
        [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1
    )
    return cls, xyxy


def _as_decoded(image: object) -> Decoded:
    """``load_image``'s full-size RGB image as a factor-1 decode (its boxes map back unchanged)."""
    rgb = np.asarray(image)
    return Decoded(rgb, rgb.shape[:2], 1)


def evaluate(
    backend: BaseBackend,
    dataset: Dataset,
    *,
    imgsz: int,
    split: str = "val",
    batch: int = 8,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    decoder: str | DecodeVariant | None = None,
) -> AccuracyResult:
    """``backend``'s accuracy on ``dataset``'s ``split`` at ``imgsz``. ``decoder`` (a registered
    ``runtimes.decode.DECODERS`` name or a variant; None: ``load_image``, the reference) decodes each
    file; a reduced decode's boxes map back to the full-size image the labels are for."""
    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import DetMetrics, box_iou

    from detbench.data.images import load_image
    from detbench.runtimes.postprocess import ultralytics_nms

    non_max_suppression = ultralytics_nms()
    names = dataset.names
    metrics = DetMetrics(names=dict(enumerate(names)))
    matcher = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    images: Sequence[Path] = dataset.images(split)[:limit]
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        if decoder is None:
            decoded = [_as_decoded(load_image(p)) for p in chunk]
        else:
            variant = DECODERS[decoder] if isinstance(decoder, str) else decoder
            decoded = [variant.decode(p, imgsz) for p in chunk]
        x, infos = preprocess([d.rgb for d in decoded], imgsz)
        raw = backend.run_batched(x, batch)
        preds = non_max_suppression(
            torch.from_numpy(raw),
            VAL_CONF,
            VAL_IOU,
            multi_label=True,
            max_det=VAL_MAX_DET,
            max_time_img=1e6,
            end2end=is_end2end(backend),  # as YOLO.val() scores an NMS-free model: no NMS
        )
        for path, d, pred, info in zip(chunk, decoded, preds, infos):
            height, width = d.full_shape
            tcls, tbox = read_labels(dataset.label_for(path), width, height)
            pred = pred.numpy()
            pbox = d.boxes_to_full(unletterbox_boxes(pred[:, :4].astype(np.float32), info))
            if len(tcls) and len(pred):
                iou = box_iou(torch.from_numpy(tbox).float(), torch.from_numpy(pbox).float())
                tp = BaseValidator.match_predictions(
                    matcher, torch.from_numpy(pred[:, 5]), torch.from_numpy(tcls), iou
                ).numpy()
            else:
                tp = np.zeros((len(pred), 10), dtype=bool)
            metrics.update_stats(
                {
                    "tp": tp,
                    "conf": pred[:, 4],
                    "pred_cls": pred[:, 5],
                    "target_cls": tcls,
                    "target_img": np.unique(tcls),
                    "im_name": path.name,
                }
            )
        if progress:
            progress(len(chunk))
    metrics.process()
    per_class = per_class_metrics(metrics, names)
    box = metrics.box
    return AccuracyResult(
        mAP50=float(box.map50),
        mAP50_95=float(box.map),
        precision=float(box.mp),
        recall=float(box.mr),
        per_class=per_class,
        images=len(images),
    )
