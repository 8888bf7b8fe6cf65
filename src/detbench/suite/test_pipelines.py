"""Pipeline stages: every registered decode, preprocess and postprocess variant against its stage's
reference (``detbench.runtimes.pipeline``), on Hypothesis-drawn files, images and raw heads.
Seen failing: ``tests/test_suite_pipelines.py`` registers a letterbox one pixel off and an NMS
without class offsets, and this module fails naming each.

A variant registered with ``pipeline.register`` is a new param of the tests below, with no new test
code. A variant claiming *identical* output is held to it bit for bit; a reduced decode (not
identical) to the reduced decode's shape contract: the displayed image at a DCT factor that the letterbox
does not enlarge, sides rounded up as libjpeg rounds. Its tolerance row
(``verify.decode.DECODE_TOLERANCES``: mAP within the INT8 bounds, detections guarded against gross
breakage) needs a model and labels, so ``tests/test_decode.py`` checks it on the labelled photo set,
not here.
Preprocess and postprocess variants have no tolerance rows, so one that claims less than identity
fails here. No backend runs: the stages are compared on their own inputs and outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from detbench.data.images import to_rgb
from detbench.runtimes import pipeline
from detbench.runtimes.pipeline import PipelineVariant
from detbench.testing.strategies import image_files, images, nms_arguments, raw_heads
from detbench.verify.decode import DECODE_TOLERANCES, assert_reduced_shape
from detbench.verify.pipeline import assert_same_decoded, assert_same_detections, assert_same_input

pytestmark = pytest.mark.equivalence

# Model input sizes: the usual squares, any square, any rectangle (reduced decode picks its factor
# from this, so small sizes reduce small drawn files too).
IMGSZ = st.one_of(
    st.sampled_from([32, 64, 128, 320, 640]),
    st.integers(1, 400),
    st.tuples(st.integers(8, 320), st.integers(8, 320)),
)


def _variants(stage: str, *, identical: bool | None = None) -> list:
    """One param per registered variant of ``stage`` other than its reference (``identical``: only
    those claiming, or not claiming, identity), named by the variant; read at collection."""
    return [
        pytest.param(v, id=v.name)
        for v in pipeline.variants(stage)
        if not v.is_reference and (identical is None or v.identical == identical)
    ]


# One callable per variant for the process, so state (reused buffers) carries across examples; not a
# fixture, so a failing example prints the drawn input alone.
_MADE: dict[tuple[str, str], Callable] = {}


def _make(variant: PipelineVariant) -> Callable:
    return _MADE.setdefault((variant.stage, variant.name), variant.make())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each drawn file is written (one name, overwritten per example)."""
    return tmp_path_factory.mktemp("pipelines")


# -- decode ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", _variants("decode"))
# JPEGs (of 16 px and more, which libjpeg can reduce) three times in four, and half the model inputs
# a fraction of the file's long side (a reduced decode reduces for those): what a variant does its way.
@given(file=image_files(formats=("JPEG",), min_side=16) | image_files(), data=st.data())
def test_decode_variant_matches_reference(variant: PipelineVariant, folder: Path, file, data) -> None:
    """Any size, mode (JPEG: L, RGB, CMYK; PNG: L, RGB, RGBA, P, I;16) and EXIF orientation 1..8:
    an identical claim gives the reference's array bit for bit; a reduced decode (which needs a
    tolerance row) gives the displayed image at a DCT factor the letterbox to ``imgsz`` does not
    enlarge, sides rounded up."""
    long = max(file.size)
    imgsz = data.draw(
        st.sampled_from([2, 3, 4, 6, 8, 16]).map(lambda k: max(1, long // k)) | IMGSZ, label="imgsz"
    )
    path = file.write(folder)
    event(f"{file.format} {file.mode}")
    ref = pipeline.reference("decode").make()(path, imgsz)
    out = _make(variant)(path, imgsz)
    label = f"decode {variant.name} on a {file.format} {file.mode} {file.size} orientation {file.orientation}"
    if variant.identical:
        assert_same_decoded(ref, out, label=label)
    else:
        assert variant.name in DECODE_TOLERANCES, f"decode variant {variant.name!r}: no identity, no row"
        event(f"factor {out.factor}")
        assert_reduced_shape(ref, out, imgsz, label=label)


# -- preprocess -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", _variants("preprocess"))
@given(image=images(max_side=1024), imgsz=IMGSZ, mode=st.sampled_from(["letterbox", "letterbox", "resize"]))
def test_preprocess_variant_gives_the_reference_input(
    variant: PipelineVariant, image, imgsz, mode: str
) -> None:
    """A decoded image (any drawn mode, converted as decode converts it), any target size: the
    reference letterbox's model input and letterbox info, bit for bit."""
    assert variant.identical, (
        f"preprocess variant {variant.name!r} claims no identity, and model inputs have no tolerance row"
    )
    rgb = np.asarray(to_rgb(image))
    ref = pipeline.reference("preprocess").make()(rgb, imgsz, mode)
    assert_same_input(
        ref, _make(variant)(rgb, imgsz, mode), label=f"preprocess {variant.name} {imgsz} {mode}"
    )


# -- postprocess ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", _variants("postprocess"))
@given(head=raw_heads(), kw=nms_arguments())
def test_postprocess_variant_gives_the_reference_detections(variant: PipelineVariant, head, kw) -> None:
    """Crowded, tied, many-class and empty raw heads at any conf/iou/max_det: ultralytics' NMS's
    detections, boxes, scores, classes and order bit for bit."""
    assert variant.identical, (
        f"postprocess variant {variant.name!r} claims no identity, and detections have no tolerance row here"
    )
    raw, infos, names = head
    ref = pipeline.reference("postprocess").make()(raw, infos, names, **kw)
    out = _make(variant)(raw, infos, names, **kw)
    assert_same_detections(ref, out, label=f"postprocess {variant.name} {kw}")
