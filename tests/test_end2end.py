"""The NMS-free (end2end) configuration: its postprocess, who may have it, and its export's agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detbench import CLASS_NAMES
from detbench.errors import ModelFileError
from detbench.runtimes.backends import REGISTRY, OnnxRuntimeEnd2EndBackend
from detbench.runtimes.end2end import postprocess_end2end
from detbench.runtimes.postprocess import CONF, Detections
from detbench.runtimes.preprocess import LetterboxInfo

# A 50 x 100 (w x h) image letterboxed to 128: gain 1.28, 32 px of padding on the left.
TALL = LetterboxInfo((100, 50), (128, 128), (1.28, 1.28), (32, 0), "letterbox")


def _rows(*rows: tuple[float, ...], k: int = 300) -> np.ndarray:
    """One image's (1, k, 6) end2end output: the given rows first, then score-0 filler."""
    out = np.zeros((1, k, 6), np.float32)
    if rows:
        out[0, : len(rows)] = rows
    return out


class TestPostprocess:
    def test_boxes_are_mapped_back_through_the_letterbox_and_clipped(self) -> None:
        """Input-pixel boxes lose the padding and the gain; one reaching past the image is clipped to it."""
        out = _rows((38.4, 12.8, 44.8, 25.6, 0.9, 3), (60.0, 100.0, 200.0, 140.0, 0.5, 7))
        (det,) = postprocess_end2end(out, [TALL], CLASS_NAMES)
        np.testing.assert_allclose(det.xyxy, [[5, 10, 10, 20], [21.875, 78.125, 50, 100]], rtol=1e-6)
        assert det.class_ids.tolist() == [3, 7] and det.scores.tolist() == pytest.approx([0.9, 0.5])

    def test_the_threshold_is_strict_and_max_det_keeps_the_first_rows(self) -> None:
        """A score equal to conf is dropped (ultralytics' end2end branch); max_det keeps the head's order."""
        out = _rows(
            (40, 10, 50, 20, 0.8, 1),
            (40, 10, 50, 20, 0.6, 2),
            (40, 10, 50, 20, CONF, 3),
            (40, 10, 50, 20, 0.1, 4),
        )
        assert postprocess_end2end(out, [TALL], CLASS_NAMES)[0].class_ids.tolist() == [1, 2]
        assert postprocess_end2end(out, [TALL], CLASS_NAMES, max_det=1)[0].class_ids.tolist() == [1]
        assert len(postprocess_end2end(_rows(), [TALL], CLASS_NAMES)[0]) == 0

    @pytest.mark.parametrize(
        ("out", "message"),
        [
            (np.zeros((1, 14, 336), np.float32), "not .N, detections, 6."),
            (_rows((40, 10, 50, 20, 0.8, 10)), "class index 10 outside the 10 classes"),
            (np.zeros((2, 300, 6), np.float32), "1 letterbox infos for a batch of 2"),
        ],
    )
    def test_what_is_not_end2end_output_is_refused(self, out: np.ndarray, message: str) -> None:
        """A raw head, a class the model does not have, or a batch without its letterbox infos."""
        with pytest.raises(ValueError, match=message):
            postprocess_end2end(out, [TALL], CLASS_NAMES)


def test_a_yolov8_model_has_no_end2end_configuration(baseline: Path, tmp_path: Path) -> None:
    """For YOLOv8 the backend says in one line why, naming the family, and loading it refuses the same."""
    from detbench.runtimes.cache import ArtifactCache
    from detbench.runtimes.workbench import Workbench

    reason = OnnxRuntimeEnd2EndBackend.model_unavailable(baseline)
    assert (
        reason and reason.startswith("yolov8n's Detect head has no one-to-one branch") and "\n" not in reason
    )
    assert OnnxRuntimeEnd2EndBackend.unavailable() is None, "it is verified wherever the model has the head"
    assert all(
        REGISTRY[n].model_unavailable(baseline) is None for n in REGISTRY if n != "onnxruntime-end2end"
    )
    bench = Workbench.from_options(baseline)
    bench.exporter.cache = ArtifactCache(tmp_path)  # nothing may be built: it is refused before
    with pytest.raises(ModelFileError, match="yolov8n's Detect head has no one-to-one branch"):
        bench.load("onnxruntime-end2end")


def _above(rows: np.ndarray) -> Detections:
    """One image's rows above the threshold with a box of positive area, in input pixels (unclipped,
    so IoU matching is sound). The untrained YOLO26 (reg_max 1) also predicts inverted boxes (x2 < x1),
    whose IoU is 0 even with themselves; a trained one has none worth comparing."""
    kept = rows[(rows[:, 4] > CONF) & (rows[:, 2] > rows[:, 0]) & (rows[:, 3] > rows[:, 1])]
    return Detections(kept[:, :4], kept[:, 4], kept[:, 5].astype(np.int64), CLASS_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["yolo26", "yolov10"])
def test_the_end2end_export_agrees_with_the_models_own_end2end_forward(family: str, dataset) -> None:
    """A tiny family model's end2end ONNX finds the detections its own one-to-one head finds, within
    the tolerance row (untrained, with BatchNorm statistics so that scores differ)."""
    import torch

    from detbench.data.images import load_image
    from detbench.model.checkpoint import load_detection_model
    from detbench.runtimes.export import untrained_checkpoint
    from detbench.runtimes.preprocess import preprocess
    from detbench.runtimes.workbench import Workbench
    from detbench.verify.compare import TOLERANCES, assert_detections_match

    imgsz = 128  # as measured: at 64 px this stand-in saturates (scores 1.0, tied), which no check can order
    weights = untrained_checkpoint("n", imgsz, CLASS_NAMES, family=family, bn_images=16)
    assert OnnxRuntimeEnd2EndBackend.model_unavailable(weights) is None
    backend = Workbench.from_options(weights, imgsz=imgsz).load("onnxruntime-end2end")
    x, _ = preprocess([load_image(p) for p in dataset.images("val")[:8]], imgsz)
    out = backend.run(x)
    with torch.inference_mode():
        ref = load_detection_model(weights, end2end=True)[0](torch.from_numpy(x)).numpy()
    assert out.shape == ref.shape == (8, 300, 6)
    theirs, ours = [_above(r) for r in ref], [_above(o) for o in out]
    assert sum(map(len, theirs)) >= 8, "the model must find something, or this checks nothing"
    assert_detections_match(theirs, ours, TOLERANCES["onnxruntime-end2end"], label=family)
