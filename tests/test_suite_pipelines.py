"""The shipped suite's pipeline module fails on broken variants: a letterbox one pixel off and an NMS
without class offsets, each registered claiming identity (``tests/_support/broken_variants.py``),
fail ``detbench.suite.test_pipelines`` by name, while the real variants pass beside them."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from PIL import Image

from _support import broken_variants
from detbench.runtimes import pipeline
from detbench.runtimes.decode import DECODERS, Decoded
from detbench.testing.strategies import EXIF_ORIENTATION, FILE_MODES, EncodedImage, image_files
from detbench.verify.decode import assert_reduced_shape
from detbench.verify.pipeline import StageMismatch, assert_same_decoded, assert_same_input

TESTS = Path(__file__).resolve().parent
MODULE = "detbench.suite.test_pipelines"


@given(file=image_files())
def test_drawn_files_are_what_they_say(file: EncodedImage) -> None:
    """A drawn file opens as its format, mode and size, a mode that format holds, with its tag."""
    img = Image.open(io.BytesIO(file.data))
    assert (img.format, img.mode, img.size) == (file.format, file.mode, file.size)
    assert file.mode in FILE_MODES[file.format]
    assert img.getexif().get(EXIF_ORIENTATION) == file.orientation


@pytest.fixture(scope="module")
def tagged_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 600 x 200 JPEG stored sideways with orientation 6: displayed 200 wide, 600 high."""
    path = tmp_path_factory.mktemp("tagged") / "tagged.jpg"
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    rgb = np.random.default_rng(1).integers(0, 256, (200, 600, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, "JPEG", exif=exif.tobytes())
    return path


def test_decode_checks_reject_an_exif_blind_decoder(tagged_jpeg: Path) -> None:
    """The suite's decode checks are not vacuous: a decode ignoring the tag fails both, and a reduced
    decode one factor too far (an image the letterbox must enlarge) fails the reduced contract."""
    ref = pipeline.reference("decode").make()(tagged_jpeg, 64)
    blind = np.asarray(Image.open(tagged_jpeg).convert("RGB"))
    with pytest.raises(StageMismatch, match="decoded image: shape"):
        assert_same_decoded(ref, Decoded(blind, blind.shape[:2], 1))
    with pytest.raises(StageMismatch, match="full shape"):
        assert_reduced_shape(ref, Decoded(blind, blind.shape[:2], 1), 64)
    good = DECODERS["pillow-reduced"].decode(tagged_jpeg, 64)
    assert good.factor == 8 and good.full_shape == (600, 200)
    assert_reduced_shape(ref, good, 64)
    assert_same_decoded(ref, DECODERS["opencv"].decode(tagged_jpeg, 64))
    with pytest.raises(StageMismatch, match=r"factor 8 for .* at most 4"):
        assert_reduced_shape(ref, good, 128)


def test_unregister_removes_a_variant_but_never_a_reference() -> None:
    variant = broken_variants.BROKEN[0]
    pipeline.register(variant)
    try:
        assert pipeline.get(variant.stage, variant.name) is variant
    finally:
        assert pipeline.unregister(variant.stage, variant.name) is variant
    assert variant.name not in {v.name for v in pipeline.variants(variant.stage)}
    with pytest.raises(ValueError, match="cannot be unregistered"):
        pipeline.unregister("preprocess", "reference")
    with pytest.raises(ValueError, match="no preprocess variant"):
        pipeline.unregister("preprocess", variant.name)


def test_ceil_pad_is_one_pixel_off_on_odd_padding() -> None:
    """101 rows into 128: 27 rows of padding, 13 on top for the reference, 14 for ceil(13.5)."""
    rgb = np.random.default_rng(0).integers(0, 256, (101, 128, 3), dtype=np.uint8)
    ref = pipeline.reference("preprocess").make()(rgb, 128)
    out = broken_variants.letterbox_ceil_pad(rgb, 128)
    assert (ref[1].pad, out[1].pad) == ((0, 13), (0, 14))
    with pytest.raises(StageMismatch, match="model input"):
        assert_same_input(ref, out)


@pytest.mark.equivalence
def test_suite_fails_each_broken_variant_by_name(tmp_path: Path) -> None:
    """With both broken variants registered, the module fails exactly their two tests, each naming its
    variant, and every real variant's test passes; nothing stays registered in this process."""
    before = dict(pipeline.REGISTRY)
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": "ci",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p),
    }
    out = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "--pyargs", MODULE, "-p", "_support.broken_variants"),
            *("-p", "no:cacheprovider", "-p", "no:xdist", "-rA", "-q"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-4000:]
    lines = text.splitlines()
    failed = sorted(line.split("::")[-1].split(" ")[0] for line in lines if line.startswith("FAILED "))
    assert failed == [
        f"test_postprocess_variant_gives_the_reference_detections[{broken_variants.POSTPROCESS}]",
        f"test_preprocess_variant_gives_the_reference_input[{broken_variants.PREPROCESS}]",
    ], text[-4000:]
    # Each failure's message names its variant and what differed.
    assert f"StageMismatch: preprocess {broken_variants.PREPROCESS}" in text
    assert f"StageMismatch: postprocess {broken_variants.POSTPROCESS}" in text
    passed = {line.split("[")[-1].rstrip("]") for line in lines if line.startswith("PASSED ")}
    real = {v.name for s in pipeline.STAGES for v in pipeline.variants(s) if not v.is_reference}
    assert real <= passed, (real - passed, text[-4000:])
    assert before == pipeline.REGISTRY
