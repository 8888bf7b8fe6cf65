"""The end2end configuration through the suite's, the report's and tune's verification, on fake outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detbench import CLASS_NAMES
from detbench.runtimes import end2end
from detbench.runtimes.backends import REGISTRY, InputSpec, create, reference_of
from detbench.runtimes.end2end import to_detections
from detbench.runtimes.postprocess import Detections, postprocess
from detbench.runtimes.preprocess import LetterboxInfo
from detbench.verify.compare import TOLERANCES, OutputMismatch, assert_detections_match, detection_deviation
from detbench.verify.reference import reference_detections

# A 50 x 100 (w x h) image letterboxed to 128: gain 1.28, 32 px of padding on the left.
TALL = LetterboxInfo((100, 50), (128, 128), (1.28, 1.28), (32, 0), "letterbox")
ROW = TOLERANCES["onnxruntime-end2end"]


def _rows() -> np.ndarray:
    """One image's (1, 300, 6) end2end output: three detections of three classes, then score-0 filler."""
    out = np.zeros((1, 300, 6), np.float32)
    out[0, :3] = [
        (38.4, 12.8, 44.8, 25.6, 0.9, 3),
        (60.0, 50.0, 90.0, 120.0, 0.6, 7),
        (40, 60, 80, 90, 0.4, 1),
    ]
    return out


class FakeBackend:
    """Returns its fixed output (trimmed to the batch); ``output`` says raw head or end2end rows."""

    def __init__(self, name: str, out: np.ndarray, output: str) -> None:
        self.name, self.out, self.output = name, out, output
        self.spec = InputSpec(None, 3, 128, 128)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.out[: len(x)]

    def run_batched(self, x: np.ndarray, batch: int = 8) -> np.ndarray:
        return self.out[: len(x)]


_REAL = end2end.postprocess_end2end


def _forgets_the_letterbox(out, infos, names, *, conf: float = 0.25, **_kw) -> list[Detections]:
    """Keeps the boxes in model-input pixels."""
    kept = [r[r[:, 4] > conf] for r in out]
    return [Detections(k[:, :4], k[:, 4], k[:, 5].astype(np.int64), tuple(names)) for k in kept]


def _drops_the_class_column(out, infos, names, **kw) -> list[Detections]:
    """Calls every detection class 0."""
    return [
        Detections(d.xyxy, d.scores, np.zeros_like(d.class_ids), d.names)
        for d in _REAL(out, infos, names, **kw)
    ]


class TestRoutes:
    def test_the_reference_route_agrees_with_the_end2end_postprocess(self) -> None:
        """ultralytics' end2end branch + scale_boxes and ours agree (letterbox and plain resize)."""
        resized = LetterboxInfo((100, 50), (128, 128), (2.56, 1.28), (0, 0), "resize")
        for info in (TALL, resized):
            theirs = reference_detections(_rows(), [info], CLASS_NAMES, output="detections")[0]
            ours = to_detections(_rows(), [info], CLASS_NAMES, output="detections")[0]
            np.testing.assert_allclose(ours.xyxy, theirs.xyxy, atol=1e-4)
            assert ours.class_ids.tolist() == theirs.class_ids.tolist() == [3, 7, 1]
            np.testing.assert_array_equal(ours.scores, theirs.scores)

    @pytest.mark.parametrize("broken", [_forgets_the_letterbox, _drops_the_class_column])
    def test_a_broken_end2end_postprocess_fails_the_match(self, broken, monkeypatch) -> None:
        """What the suite's detections tests assert: a postprocess that keeps input-pixel boxes or
        loses the class fails against the reference route (which does not use it)."""
        ref = reference_detections(_rows(), [TALL], CLASS_NAMES, output="detections")
        assert_detections_match(ref, to_detections(_rows(), [TALL], CLASS_NAMES, output="detections"), ROW)
        monkeypatch.setattr(end2end, "postprocess_end2end", broken)
        with pytest.raises(OutputMismatch, match="no match"):
            assert_detections_match(
                ref, to_detections(_rows(), [TALL], CLASS_NAMES, output="detections"), ROW
            )

    def test_a_raw_head_goes_through_nms_and_an_unknown_output_is_refused(self) -> None:
        raw = np.zeros((1, 14, 8), np.float32)
        raw[0, :4, 0], raw[0, 5, 0] = (64, 64, 20, 20), 0.9
        (det,) = to_detections(raw, [TALL], CLASS_NAMES, output="raw")
        assert det.to_list() == postprocess(raw, [TALL], CLASS_NAMES)[0].to_list() and len(det) == 1
        for fn in (to_detections, reference_detections):
            with pytest.raises(ValueError, match="unknown backend output 'rows'"):
                fn(raw, [TALL], CLASS_NAMES, output="rows")

    def test_each_backend_has_its_reference(self) -> None:
        """Raw heads against eager PyTorch; end2end against the model's own end2end forward, which is
        loadable by name but not a registered (searched, reported) backend."""
        assert {n: reference_of(n) for n in REGISTRY if REGISTRY[n].output == "detections"} == {
            "onnxruntime-end2end": "pytorch-end2end"
        }
        assert {reference_of(n) for n in REGISTRY if REGISTRY[n].output == "raw"} == {"pytorch"}
        assert "pytorch-end2end" not in REGISTRY and create("pytorch-end2end").output == "detections"


class TestReport:
    def test_measure_deviation_matches_end2end_detections_with_its_reference(self) -> None:
        """The end2end row is checked as detections against pytorch-end2end's, not as a raw head;
        boxes moved by 3 px fail its check, naming detections."""
        from detbench.report.steps import measure_deviation

        raw = np.zeros((1, 14, 8), np.float32)
        shifted = _rows()
        shifted[0, :3, :4] += 3.0
        refs = {"pytorch-end2end": FakeBackend("pytorch-end2end", _rows(), "detections")}
        x = np.zeros((1, 3, 128, 128), np.float32)
        for out, passed in ((_rows(), True), (shifted, False)):
            loaded = {
                "pytorch": FakeBackend("pytorch", raw, "raw"),
                "onnxruntime-end2end": FakeBackend("onnxruntime-end2end", out, "detections"),
            }
            devs, checks = measure_deviation(loaded, x, [TALL], CLASS_NAMES, refs)
            (check,) = [c for c in checks if c.backend == "onnxruntime-end2end"]
            assert (check.kind, check.name, check.passed) == ("tolerance", "detections", passed), check.reason
            # Paired loosely (DEVIATION_IOU), so the failing row still shows how far: 3 px / gain 1.28.
            assert devs["onnxruntime-end2end"].box_max_abs == pytest.approx(0.0 if passed else 3 / 1.28)

    def test_accuracy_is_checked_against_the_end2end_reference(self) -> None:
        """An end2end mAP far from the one-to-many reference's but equal to its own forward's passes;
        one far from its own forward's fails."""
        from detbench.report.steps import accuracy_checks

        def acc(m: float) -> dict:
            return {"mAP50": m, "mAP50-95": m / 2, "per_class": {"a": {"mAP50": m}}}

        ok = accuracy_checks(
            {"pytorch": acc(0.6), "onnxruntime-end2end": acc(0.5)}, references={"pytorch-end2end": acc(0.5)}
        )
        bad = accuracy_checks(
            {"pytorch": acc(0.5), "onnxruntime-end2end": acc(0.5)}, references={"pytorch-end2end": acc(0.6)}
        )
        assert [c.passed for c in ok] == [True] and [c.passed for c in bad] == [False]


def _context(ref_rows: np.ndarray):
    from detbench.tune.search import Context, RefOutputs

    x = np.zeros((1, 3, 128, 128), np.float32)
    dets = reference_detections(ref_rows, [TALL], CLASS_NAMES, output="detections")
    return Context(
        imgsz=128,
        names=CLASS_NAMES,
        weights=Path("w.pt"),
        benches={},
        dataset=None,
        x=x,
        infos=[TALL],
        ref_raw=np.zeros((1, 14, 8), np.float32),
        ref_dets=[],
        ref_accuracy=None,
        x1=x,
        others={"pytorch-end2end": RefOutputs(ref_rows, dets, None)},
    )


class TestTune:
    def test_an_end2end_point_verifies_against_its_own_forward_and_a_broken_one_does_not(self) -> None:
        """tune's admission: the end2end candidate is verified without a raw-head check; boxes off by
        3 px are refused with the matcher's message."""
        from detbench.tune.search import Candidate, verify
        from detbench.tune.space import Point

        shifted = _rows()
        shifted[0, :3, :4] += 3.0
        for out, verified in ((_rows(), True), (shifted, False)):
            cand = Candidate(Point("onnxruntime-end2end", 1), "fp32", artifact=Path("m.onnx"))
            cand.backend = FakeBackend("onnxruntime-end2end", out, "detections")
            verify(_context(_rows()), cand, {})
            assert cand.verified is verified, cand.reason
            assert verified or "failed verification: onnxruntime-end2end 1t: detections differ" in cand.reason
        assert cand.deviation is not None and cand.deviation["box_max_abs"] == pytest.approx(
            3 / 1.28
        )  # image px

    def test_a_model_without_a_one_to_one_head_gets_a_reason_not_an_artifact(self, baseline: Path) -> None:
        from detbench.tune.search import Candidate, load
        from detbench.tune.space import Point

        ctx = _context(_rows())
        ctx.weights = baseline
        cand = Candidate(Point("onnxruntime-end2end", 1), "fp32")
        load(ctx, cand)
        assert cand.backend is None and cand.artifact is None
        assert cand.reason.startswith(
            "no artifact for these weights: yolov8n's Detect head has no one-to-one"
        )


def test_detection_deviation_reports_the_worst_pair_and_the_unmatched() -> None:
    ref = reference_detections(_rows(), [TALL], CLASS_NAMES, output="detections")
    moved = _rows()
    moved[0, 0, 4] = 0.85  # a score 0.05 lower
    moved[0, 2, 4] = 0.1  # below the threshold: its reference detection is left unmatched
    d = detection_deviation(ref, to_detections(moved, [TALL], CLASS_NAMES, output="detections"), iou=0.5)
    assert (d.pairs, d.unmatched, d.min_iou) == (2, 1, pytest.approx(1.0))
    assert d.score_max_abs == pytest.approx(0.05, abs=1e-6) and d.box_max_abs < 1e-4


def test_the_per_image_pipeline_postprocesses_end2end_output_without_nms(tmp_path: Path) -> None:
    """The report's stage timing and tune's pipelines give each backend the postprocess of its output:
    the end2end rows map back to the image; NMS would refuse them as a raw head."""
    from PIL import Image

    from detbench.perf.measure import reference_calls

    path = tmp_path / "tall.png"
    Image.new("RGB", (50, 100), (90, 120, 30)).save(path)
    loaded = {
        "onnxruntime": FakeBackend("onnxruntime", np.zeros((1, 14, 336), np.float32), "raw"),
        "openvino": FakeBackend("openvino", np.zeros((1, 14, 336), np.float32), "raw"),
        "onnxruntime-end2end": FakeBackend("onnxruntime-end2end", _rows(), "detections"),
    }
    calls = reference_calls(loaded, 128, CLASS_NAMES)
    assert calls["onnxruntime"] is calls["openvino"] is not calls["onnxruntime-end2end"]
    det = calls["onnxruntime-end2end"](loaded["onnxruntime-end2end"].run, path)
    assert det.to_list() == to_detections(_rows(), [TALL], CLASS_NAMES, output="detections")[0].to_list()
    with pytest.raises(ValueError, match="raw head shape"):
        calls["onnxruntime"](loaded["onnxruntime-end2end"].run, path)
    # tune's pipeline search runs a Pipeline around the loaded backend: the same postprocess.
    from detbench.runtimes.pipeline import BackendConfig, Pipeline

    config = BackendConfig("onnxruntime-end2end", 1, Path("m.onnx"), 128, CLASS_NAMES)
    assert Pipeline(config).load(loaded["onnxruntime-end2end"])(path).to_list() == det.to_list()
