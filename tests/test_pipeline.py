"""Pipeline stage variants: the registry, and each identity claim held to it bit for bit."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from detbench.runtimes import pipeline
from detbench.runtimes.decode import DECODERS
from detbench.runtimes.pipeline import PipelineVariant
from detbench.runtimes.postprocess import (
    CONF,
    IOU,
    MATRIX_MAX,
    MAX_DET,
    _keep_by_loop,
    _keep_by_matrix,
    detections_from_rows,
    nms,
    numpy_nms,
    ultralytics_nms,
)
from detbench.runtimes.preprocess import (
    PAD_VALUE,
    LeanPreprocessor,
    LetterboxInfo,
    _as_rgb_array,
    _target,
    letterbox_geometry,
)
from detbench.testing.strategies import images, nms_arguments, raw_heads
from detbench.verify import golden
from detbench.verify.pipeline import StageMismatch, assert_same_detections, assert_same_input

IMGSZ = st.one_of(
    st.sampled_from([32, 64, 128, 160, 320]),
    st.integers(1, 400),
    st.tuples(st.integers(8, 320), st.integers(8, 320)),
)
IMAGES = images(min_side=1, max_side=2000, modes=("L", "RGB", "RGBA"))
MODES = st.sampled_from(["letterbox", "letterbox", "resize"])
# For a property run on a broken variant: its first counterexample is the answer, so no shrinking, and
# one error rather than a group of the distinct ones Hypothesis would otherwise collect.
REJECTS = settings(phases=[Phase.explicit, Phase.reuse, Phase.generate], report_multiple_bugs=False)


@pytest.fixture(scope="module", autouse=True)
def _torch_imported() -> None:
    """Import torch, torchvision and ultralytics' NMS once, so no test's time is that import."""
    ultralytics_nms()


def _claiming(stage: str) -> list:
    """One param per registered variant of ``stage`` other than its reference that claims identical output."""
    return [
        pytest.param(v, id=v.name) for v in pipeline.variants(stage) if v.identical and not v.is_reference
    ]


# -- deliberately broken variants: the checks below must reject them --------------------------------


def _letterbox_bankers_rounding(image, imgsz=128, mode="letterbox"):
    """The reference letterbox but padding split with round(d) (half to even) instead of round(d - 0.1):
    content lands one pixel off whenever the padding is odd and its half rounds up."""
    if mode != "letterbox":
        return pipeline.reference("preprocess").make()(image, imgsz, mode)
    rgb = _as_rgb_array(image, 0)
    (h, w), (th, tw) = rgb.shape[:2], _target(imgsz)
    r, (new_h, new_w), _ = letterbox_geometry((h, w), (th, tw))
    top, left = round((th - new_h) / 2), round((tw - new_w) / 2)
    canvas = np.full((th, tw, 3), PAD_VALUE, np.uint8)
    same = (h, w) == (new_h, new_w)
    resized = rgb if same else cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas[top : top + new_h, left : left + new_w] = resized
    x = canvas.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
    return x, LetterboxInfo((h, w), (th, tw), (r, r), (left, top), "letterbox")


def _postprocess_without_class_offset(raw, infos, names, *, conf=CONF, iou=IOU, max_det=MAX_DET):
    """The NumPy NMS with the per-class box offset dropped: boxes of different classes suppress each other."""
    return detections_from_rows(
        numpy_nms(raw, conf=conf, iou=iou, max_det=max_det, agnostic=True), infos, names
    )


# -- the registry -------------------------------------------------------------------------------------


class TestRegistry:
    def test_each_stage_has_its_reference_first(self):
        """Every stage's reference is registered, claims identity, and comes first in its listing."""
        for stage in pipeline.STAGES:
            ref = pipeline.reference(stage)
            assert ref.is_reference and ref.identical
            assert pipeline.variants(stage)[0] is ref
        assert pipeline.reference("preprocess").name == "reference"
        assert pipeline.reference("postprocess").name == "ultralytics"

    def test_the_new_variants_are_registered(self):
        """The lean preprocess and the NumPy NMS are listed and claim identical output."""
        assert pipeline.get("preprocess", "lean").identical
        assert pipeline.get("postprocess", "numpy").identical

    def test_decode_stage_is_runtimes_decoders(self):
        """Every registered decoder is a decode variant with its name, claim and function, reference first."""
        assert [v.name for v in pipeline.variants("decode")] == list(DECODERS)
        for v in pipeline.variants("decode"):
            assert v.identical == DECODERS[v.name].identical
            assert v.make() is DECODERS[v.name].decode
        assert pipeline.reference("decode").name == "pillow"

    def test_unknown_stage_duplicate_and_non_identical_reference_are_refused(self):
        """register refuses a stage outside STAGES, a taken name, and a reference that claims less."""
        fn = pipeline.get("preprocess", "lean").make
        with pytest.raises(ValueError, match="unknown pipeline stage 'inference'"):
            pipeline.register(PipelineVariant("inference", "openvino", "", identical=True, make=fn))
        with pytest.raises(ValueError, match="already registered"):
            pipeline.register(PipelineVariant("preprocess", "lean", "", identical=True, make=fn))
        with pytest.raises(ValueError, match="must claim identical"):
            pipeline.register(PipelineVariant("preprocess", "reference", "", identical=False, make=fn))
        with pytest.raises(ValueError, match="no preprocess variant 'nope'; registered: reference, lean"):
            pipeline.get("preprocess", "nope")


# -- preprocess: bit-identical model input ------------------------------------------------------------


@pytest.fixture(scope="module")
def made() -> dict[str, Callable]:
    """One instance per variant for the whole module, so buffers are reused across every example."""
    return {}


def _preprocess_holds(fn: Callable) -> Callable[[], None]:
    """The property: ``fn`` gives the reference's model input, bit for bit, for any image, size, mode."""
    ref = pipeline.reference("preprocess").make()

    @given(image=IMAGES, imgsz=IMGSZ, mode=MODES)
    def prop(image: Image.Image, imgsz, mode: str) -> None:
        assert_same_input(ref(image, imgsz, mode), fn(image, imgsz, mode), label=f"{imgsz} {mode}")

    return prop


@pytest.mark.parametrize("variant", _claiming("preprocess"))
def test_preprocess_variant_is_bit_identical(variant: PipelineVariant, made: dict) -> None:
    """Any L/RGB/RGBA image with sides 1..2000, any target size, letterbox or resize: equal bits."""
    fn = made.setdefault(variant.name, variant.make())
    _preprocess_holds(fn)()


def test_wrong_letterbox_rounding_is_rejected() -> None:
    """The same property fails on a letterbox that rounds the padding half to even."""
    with pytest.raises(StageMismatch, match="model input"):
        REJECTS(_preprocess_holds(_letterbox_bankers_rounding))()


def test_wrong_rounding_shifts_a_known_case() -> None:
    """101 rows into 128: 27 rows of padding, 13 on top for the reference, 14 with round(13.5)."""
    rgb = np.random.default_rng(0).integers(0, 256, (101, 128, 3), dtype=np.uint8)
    ref = pipeline.reference("preprocess").make()(rgb, 128)
    assert ref[1].pad == (0, 13)
    with pytest.raises(StageMismatch, match="model input"):
        assert_same_input(ref, _letterbox_bankers_rounding(rgb, 128))


class TestLeanPreprocessor:
    def test_reuses_its_buffer(self):
        """The same (1, 3, H, W) float32 array comes back for every call at one size."""
        lean = LeanPreprocessor()
        rng = np.random.default_rng(1)
        a, _ = lean(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), 128)
        b, _ = lean(rng.integers(0, 256, (50, 30, 3), dtype=np.uint8), 128)
        assert a is b and a.shape == (1, 3, 128, 128) and a.dtype == np.float32 and a.flags.c_contiguous

    def test_no_stale_pixels_after_the_geometry_changes(self):
        """A wide image, then a tall one, then the wide one again: each equals a fresh reference."""
        lean, ref = LeanPreprocessor(), pipeline.reference("preprocess").make()
        rng = np.random.default_rng(2)
        wide, tall = (rng.integers(0, 256, s, dtype=np.uint8) for s in ((40, 300, 3), (300, 40, 3)))
        for img in (wide, tall, wide):
            assert_same_input(ref(img, 96), lean(img, 96))

    def test_refuses_bad_mode(self):
        with pytest.raises(ValueError, match="mode must be"):
            LeanPreprocessor()(np.zeros((4, 4, 3), np.uint8), 32, "crop")


# -- postprocess: identical detections ----------------------------------------------------------------


NMS_ARGS = nms_arguments()


def _postprocess_holds(fn: Callable) -> Callable[[], None]:
    """The property: ``fn`` gives the reference's detections exactly, on any raw head and arguments."""
    ref = pipeline.reference("postprocess").make()

    @given(head=raw_heads(), kw=NMS_ARGS)
    def prop(head, kw) -> None:
        raw, infos, names = head
        assert_same_detections(ref(raw, infos, names, **kw), fn(raw, infos, names, **kw), label=str(kw))

    return prop


@pytest.mark.parametrize("variant", _claiming("postprocess"))
def test_postprocess_variant_gives_identical_detections(variant: PipelineVariant) -> None:
    """Crowded boxes, tied scores, up to 24 classes, no anchors at all, any conf/iou/max_det: identical."""
    _postprocess_holds(variant.make())()


def test_nms_without_class_offset_is_rejected() -> None:
    """The same property fails on an NMS that lets boxes of different classes suppress each other."""
    with pytest.raises(StageMismatch, match=r"image \d+"):
        REJECTS(_postprocess_holds(_postprocess_without_class_offset))()


@given(head=raw_heads(), kw=NMS_ARGS)
def test_numpy_nms_rows_equal_ultralytics(head, kw) -> None:
    """Before box mapping too: the (K, 6) rows, their dtype and order equal non_max_suppression's."""
    raw = head[0]
    for ref, out in zip(nms(raw, **kw), numpy_nms(raw, **kw)):
        assert ref.dtype == out.dtype and ref.shape == out.shape
        assert ref.tobytes() == out.tobytes()


@pytest.mark.parametrize("iou", [0.3, 0.29999998])
def test_overlap_at_the_threshold_is_compared_in_double(iou: float) -> None:
    """An IoU of exactly float32(0.3) (30 / 100) exceeds 0.3 in double, where torchvision compares:
    suppressed at 0.3, where a float32 comparison would keep both; and just below 0.3."""
    raw = np.zeros((1, 5, 2), np.float32)
    raw[0, :, 0] = [5, 5, 10, 10, 0.9]  # xyxy (0, 0, 10, 10)
    raw[0, :, 1] = [5, 1.5, 10, 3, 0.8]  # xyxy (0, 0, 10, 3): inside it, IoU 30 / 100
    ref = nms(raw, iou=iou)[0]
    assert len(ref) == 1
    assert ref.tobytes() == numpy_nms(raw, iou=iou)[0].tobytes()


@pytest.mark.parametrize("k", [MATRIX_MAX, MATRIX_MAX + 1])
def test_nms_at_and_above_the_matrix_bound(k: int) -> None:
    """At the bound (every overlap at once) and one candidate above it (box by box): the matrix keeps
    what the loop keeps and both give ultralytics' rows, with many overlaps exactly at iou 0.5."""
    rng = np.random.default_rng(k)
    raw = np.zeros((1, 7, k), np.float32)
    raw[0, :2] = rng.integers(0, 12, (2, k))  # whole-pixel centres, sides 2 or 4: IoUs of 1/2, 1/4, ...
    raw[0, 2:4] = rng.choice([2, 4], (2, k))
    raw[0, 4:] = np.ceil(rng.uniform(0.3, 1, (3, k)) * 8) / 8  # ties in score and across classes
    assert (raw[0, 4:].max(0) > CONF).all()
    det = numpy_nms(raw, iou=1.0, max_det=k)[0]  # every candidate, scored and offset by class
    boxes = det[:, :4] + det[:, 5:6] * 7680
    xyxy = np.ascontiguousarray(boxes[np.argsort(-det[:, 4], kind="stable")].T)
    areas = (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1])
    for max_det in (MAX_DET, 7):
        loop = _keep_by_loop(xyxy, areas, 0.5, max_det)
        assert _keep_by_matrix(xyxy, areas, 0.5, max_det) == loop
    ref = nms(raw, iou=0.5)[0]
    assert 10 < len(ref) < k
    assert ref.tobytes() == numpy_nms(raw, iou=0.5)[0].tobytes()


@given(head=raw_heads(), max_nms=st.integers(1, 50))
def test_max_nms_keeps_the_same_candidates(head, max_nms) -> None:
    """Above max_nms candidates both keep the top scores. A tie at the cut is left out: there
    ultralytics' unstable sort keeps either box (README "Pipeline variants")."""
    import torch

    raw = head[0]
    raw[:, 4:] += np.random.default_rng(0).uniform(0, 1e-3, raw[:, 4:].shape)  # fewer ties
    for image in raw:
        best = image[4:].max(0)
        top = np.sort(best[best > 0.25])[::-1]
        # float32 near 1.0 has ~8000 steps in 1e-3: the noise alone does not rule a tie out
        assume(len(top) <= max_nms or top[max_nms - 1] != top[max_nms])
    ref = ultralytics_nms()(torch.from_numpy(raw), 0.25, 0.7, max_nms=max_nms, max_time_img=1e6)
    for r, o in zip(ref, numpy_nms(raw, max_nms=max_nms)):
        assert r.numpy().tobytes() == o.tobytes() and r.numpy().dtype == o.dtype


class TestRealHeads:
    """The baseline's own raw heads: the committed goldens (scenes and ultralytics' two photos)."""

    @pytest.mark.parametrize("conf", [CONF, 0.05, 0.001])
    def test_numpy_postprocess_is_identical_on_goldens(self, conf: float) -> None:
        g = golden.load_goldens()
        infos = self._infos(g)
        names = tuple(f"c{i}" for i in range(g.raw.shape[1] - 4))
        ref = pipeline.reference("postprocess").make()(g.raw, infos, names, conf=conf)
        out = pipeline.get("postprocess", "numpy").make()(g.raw, infos, names, conf=conf)
        assert sum(len(d) for d in ref) > 0
        assert_same_detections(ref, out)

    def test_dropped_class_offset_is_caught_on_goldens(self) -> None:
        """At a low threshold the real heads hold overlapping boxes of different classes."""
        g = golden.load_goldens()
        infos = self._infos(g)
        names = tuple(f"c{i}" for i in range(g.raw.shape[1] - 4))
        ref = pipeline.reference("postprocess").make()(g.raw, infos, names, conf=0.001)
        with pytest.raises(StageMismatch):
            assert_same_detections(ref, _postprocess_without_class_offset(g.raw, infos, names, conf=0.001))

    @staticmethod
    def _infos(g: golden.Goldens) -> list[LetterboxInfo]:
        """zidane.jpg's mapping for every row: the boxes' mapping back is exercised, whatever the image."""
        s = g.imgsz
        r, _, (top, left) = letterbox_geometry((720, 1280), (s, s))
        return [LetterboxInfo((720, 1280), (s, s), (r, r), (left, top), "letterbox")] * len(g.raw)


@pytest.mark.equivalence
def test_identical_on_val_images_end_to_end(reference, dataset, model_info) -> None:
    """Val images through the baseline: each claiming variant's input and detections equal the reference's."""
    paths = dataset.images("val")[:6]
    pre = [v.make() for v in pipeline.variants("preprocess") if v.identical]
    post = [v.make() for v in pipeline.variants("postprocess") if v.identical]
    for path in paths:
        x, info = pre[0](path, model_info.imgsz)
        for fn in pre[1:]:
            assert_same_input((x, info), fn(path, model_info.imgsz), label=path.name)
        raw = reference.run(x)
        for conf in (CONF, 0.001):
            ref = post[0](raw, [info], model_info.names, conf=conf)
            for fn in post[1:]:
                assert_same_detections(ref, fn(raw, [info], model_info.names, conf=conf), label=path.name)
