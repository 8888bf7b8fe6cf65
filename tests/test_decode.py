"""Decode variants: identical claims held bit for bit, EXIF-correct shapes, the reduction factor, and
reduced decode's detections and mAP within their measured bound."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from detbench.data.datasets import Dataset, load_dataset
from detbench.data.images import load_image
from detbench.data.photos import PhotoConfig, photo_dataset, ultralytics_photos, write_photos
from detbench.errors import ImageError
from detbench.runtimes.decode import (
    DECODERS,
    REFERENCE,
    Decoded,
    DecodeVariant,
    _plain_png,
    decode,
    reduction_factor,
)
from detbench.runtimes.postprocess import ultralytics_nms
from detbench.verify.accuracy import evaluate
from detbench.verify.compare import OutputMismatch
from detbench.verify.decode import (
    DECODE_TOLERANCES,
    assert_decode_accuracy_close,
    assert_decode_detections_close,
    assert_reduced_shape,
)
from detbench.verify.pipeline import StageMismatch

IDENTICAL = [n for n, v in DECODERS.items() if v.identical]
REDUCED = [n for n, v in DECODERS.items() if not v.identical]
IMGSZ = 64  # these small photos are then reduced by 2 and 4, bus.jpg and zidane.jpg by 8


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _gamma_chunk() -> PngInfo:
    info = PngInfo()
    info.add(b"gAMA", (45455).to_bytes(4, "big"))
    return info


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Small photos with every EXIF orientation, ultralytics' two photos, and the odd files the
    OpenCV path must hand to the reference (grey and CMYK JPEGs, a tagged PNG, a palette PNG, a PNG
    with a gamma chunk) and the plain RGB and grey PNGs it decodes itself."""
    out = tmp_path_factory.mktemp("decode")
    cfg = PhotoConfig(per_size=8, sizes=((160, 120), (320, 180)))
    photos = load_dataset(write_photos(out / "photos", cfg)).images("val")
    rng = np.random.default_rng(5)
    rgb = Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    odd = {
        "grey.jpg": (rgb.convert("L"), "JPEG", {"exif": _exif(6)}),
        "cmyk.jpg": (rgb.convert("CMYK"), "JPEG", {}),
        "tagged.png": (rgb, "PNG", {"exif": _exif(8)}),
        "palette.png": (rgb.convert("P"), "PNG", {}),
        "plain.png": (rgb, "PNG", {}),  # these two take cv2's path
        "grey.png": (rgb.convert("L"), "PNG", {}),
        "gamma.png": (rgb, "PNG", {"pnginfo": _gamma_chunk()}),  # back to the reference
    }
    for name, (img, fmt, kw) in odd.items():
        img.save(out / name, fmt, **kw)
    return [*photos, *ultralytics_photos(), *(out / n for n in odd)]


def test_registry_is_described_and_has_the_reference() -> None:
    """Each variant has a one-line description; the reference claims identity with itself."""
    assert DECODERS[REFERENCE].identical
    for name, variant in DECODERS.items():
        assert variant.name == name and variant.description and "\n" not in variant.description
    assert set(DECODE_TOLERANCES) == set(REDUCED)  # every non-identical variant has a bound
    with pytest.raises(ValueError, match="unknown decoder"):
        decode("nope", "x.jpg", 64)


# -- identical claims ---------------------------------------------------------------------------------


def _assert_identical(decoder: Callable[..., Decoded], paths: Sequence[Path]) -> None:
    for p in paths:
        ref, got = DECODERS[REFERENCE].decode(p, IMGSZ), decoder(p, IMGSZ)
        assert got.rgb.dtype == np.uint8 and got.rgb.flags.c_contiguous, p.name
        assert got.rgb.shape == ref.rgb.shape and got.full_shape == ref.full_shape, p.name
        diff = int(np.abs(got.rgb.astype(np.int16) - ref.rgb).max())
        # Measured 0 over the 24-photo set, bus.jpg and zidane.jpg (scripts/measure_decode.py): both
        # wheels bundle libjpeg-turbo with the same IDCT and upsampling, so no bound but identity.
        assert diff == 0, f"{p.name}: max abs pixel difference {diff} from {REFERENCE}"


@pytest.mark.parametrize("name", IDENTICAL)
def test_identical_variants_give_the_reference_array(name: str, files: list[Path]) -> None:
    """A variant claiming identity gives the reference's array bit for bit, EXIF tags included."""
    _assert_identical(DECODERS[name].decode, files)


def _cv2_ignoring_exif(path: Path, imgsz: int) -> Decoded:
    """Broken on purpose: OpenCV told to ignore the orientation tag."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return Decoded(rgb, rgb.shape[:2], 1)


def test_identity_check_fails_on_a_decoder_that_ignores_exif(files: list[Path]) -> None:
    """The identity check above is not vacuous: a decoder ignoring the tag fails it."""
    with pytest.raises(AssertionError):
        _assert_identical(_cv2_ignoring_exif, files)


def test_truncated_jpeg_is_refused_by_every_variant(files: list[Path], tmp_path: Path) -> None:
    """libjpeg only warns on a truncated file; every variant refuses it as the reference does."""
    data = files[0].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    for name in DECODERS:
        with pytest.raises(ImageError, match="truncated"):
            decode(name, cut, IMGSZ)


# -- EXIF: the displayed shape ----------------------------------------------------------------------


def _assert_displayed_shapes(decoder: Callable[..., Decoded], paths: Sequence[Path]) -> None:
    for p in paths:
        want = DECODERS[REFERENCE].decode(p, IMGSZ).rgb.shape[:2]
        got = decoder(p, IMGSZ)
        f = got.factor
        assert got.full_shape == want, (p.name, got.full_shape, want)
        assert got.rgb.shape[:2] == (-(-want[0] // f), -(-want[1] // f)), (p.name, f, got.rgb.shape)


@pytest.mark.parametrize("name", list(DECODERS))
def test_every_variant_gives_the_displayed_shape(name: str, files: list[Path]) -> None:
    """Every variant's image is the EXIF-corrected one: full shape = the reference's, decoded shape =
    that shape divided by its factor, rounded up as libjpeg rounds."""
    _assert_displayed_shapes(DECODERS[name].decode, files)


def test_shape_check_fails_on_a_decoder_that_ignores_exif(files: list[Path]) -> None:
    with pytest.raises(AssertionError):
        _assert_displayed_shapes(_cv2_ignoring_exif, files)


# -- the reduction factor ---------------------------------------------------------------------------

# ((h, w), imgsz, factor): the largest of 2, 4, 8 whose ceil(side / f) the letterbox does not enlarge.
FACTORS = [
    ((1080, 1920), 640, 2),  # 960 >= 640; at 4, 480 < 640
    ((720, 1280), 640, 2),  # 640 exactly
    ((480, 640), 640, 1),
    ((1080, 1920), 128, 8),  # 240; libjpeg offers no 1/16
    ((1080, 810), 640, 1),  # bus.jpg portrait: 540 < 640
    ((1080, 810), 320, 2),
    ((720, 1280), 320, 4),
    ((1281, 100), 641, 2),  # ceil(1281 / 2) = 641: floor would wrongly say 1
    ((1080, 1920), 2000, 1),  # the letterbox enlarges anyway: decode everything
    ((1080, 1920), (384, 640), 2),  # rectangular input: (540, 960) still shrinks, (270, 480) would not
    ((4, 1920), 128, 4),  # sides must be at least f pixels
]


def _assert_factors(choose: Callable[[tuple[int, int], object], int]) -> None:
    for shape, imgsz, want in FACTORS:
        assert choose(shape, imgsz) == want, (shape, imgsz, want)


def test_reduction_factor_picks_the_largest_that_keeps_the_input_size() -> None:
    _assert_factors(reduction_factor)


def test_factor_check_fails_one_step_too_far() -> None:
    """A choice one reduction too far (capped at libjpeg's 8) fails the table."""
    with pytest.raises(AssertionError):
        _assert_factors(lambda shape, imgsz: min(8, 2 * reduction_factor(shape, imgsz)))


@pytest.mark.parametrize("name", REDUCED)
def test_reduced_variants_decode_at_the_chosen_factor(name: str, files: list[Path]) -> None:
    """The factor used is reduction_factor's for the displayed shape, and the letterbox then shrinks."""
    seen = set()
    for p in files:
        d = DECODERS[name].decode(p, IMGSZ)
        # PNGs, and CMYK JPEGs for OpenCV, go to the reference, whole.
        reducible = p.suffix == ".jpg" and not (name == "opencv-reduced" and p.name == "cmyk.jpg")
        if reducible:
            assert d.factor == reduction_factor(d.full_shape, IMGSZ), p.name
        else:
            assert d.factor == 1, p.name
        assert max(d.rgb.shape[:2]) >= IMGSZ or max(d.full_shape) < IMGSZ, p.name
        seen.add(d.factor)
    assert {2, 4, 8} <= seen


@pytest.mark.parametrize("name", list(DECODERS))
def test_a_png_is_decoded_once(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant falls back to the reference for a PNG without reading its EXIF first: Pillow's
    getexif() on a PNG decodes every pixel (an eXIf chunk may follow them), which doubled the decode
    of the 128 px val set."""
    from PIL import Image as PILImage

    path = tmp_path / "a.png"
    Image.fromarray(np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)).save(path)
    decoders = []
    real = PILImage._getdecoder
    monkeypatch.setattr(PILImage, "_getdecoder", lambda *a, **k: decoders.append(a[1]) or real(*a, **k))
    out = DECODERS[name].decode(path, 32)
    want = [] if name.startswith("opencv") else ["zip"]  # cv2 decodes a plain PNG itself
    assert decoders == want, f"{name} ran Pillow's decoders {decoders} on one PNG"
    assert np.array_equal(out.rgb, np.asarray(load_image(path)))


def test_boxes_to_full_scales_by_the_factor_and_clips() -> None:
    """Reduced pixel i covers full pixels [i f, (i + 1) f): edges scale by f, then clip to the image."""
    d = Decoded(np.zeros((270, 203, 3), np.uint8), (1080, 810), 4)
    got = d.boxes_to_full(np.array([[10.0, 20.0, 203.0, 270.0]], np.float32))
    np.testing.assert_array_equal(got, [[40.0, 80.0, 810.0, 1080.0]])
    assert got.dtype == np.float32


# -- the detection guard catches gross breakage (a fake detector, fast) -------------------------------

BLOB_NAMES = ("blob",)


class _BrightBoxBackend:
    """A fake detector: one box around the model input's bright pixels, class 0 at score 0.8, so its
    detections move exactly as the decoded image's content does."""

    def run(self, x: np.ndarray) -> np.ndarray:
        raw = np.zeros((len(x), 4 + len(BLOB_NAMES), 2), np.float32)  # a second, empty anchor
        for n, img in enumerate(x):
            ys, xs = np.nonzero(img.mean(axis=0) > 0.7)
            if len(xs):
                x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
                raw[n, :, 0] = ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 0.8)
        return raw


@pytest.fixture(scope="module")
def blob_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """640x480 JPEGs, dark with one bright rectangle off the centre (one stored sideways with EXIF
    orientation 6): 64 px inputs decode them reduced by 8. Imports ultralytics' NMS (torch) first, so
    no test's time is that import."""
    ultralytics_nms()
    out = tmp_path_factory.mktemp("blobs")
    paths = []
    for i, (x0, y0, x1, y1) in enumerate([(80, 64, 240, 200), (400, 280, 576, 416), (64, 296, 224, 440)]):
        rgb = np.full((480, 640, 3), 40, np.uint8)
        rgb[y0:y1, x0:x1] = 230
        img, kw = Image.fromarray(rgb), {}
        if i == 2:  # stored turned, displayed as drawn
            img, kw = img.transpose(Image.Transpose.ROTATE_90), {"exif": _exif(6)}
        paths.append(out / f"blob{i}.jpg")
        img.save(paths[-1], "JPEG", quality=90, **kw)
    return paths


def _broken_reduced(broken: str) -> DecodeVariant:
    """The reduced decode, then broken on purpose: its image flipped, shifted by an eighth of its width
    (wrapping), or cropped by an eighth each side, each still claiming the whole photo at its factor."""

    def decode(path: Path, imgsz: int) -> Decoded:
        d = DECODERS["opencv-reduced"].decode(path, imgsz)
        h, w = d.rgb.shape[:2]
        rgb = {
            "flipped": lambda: d.rgb[:, ::-1],
            "shifted": lambda: np.roll(d.rgb, w // 8, axis=1),
            "cropped": lambda: d.rgb[h // 8 : h - h // 8, w // 8 : w - w // 8],
        }[broken]()
        return Decoded(np.ascontiguousarray(rgb), d.full_shape, d.factor)

    return DecodeVariant(broken, decode, "broken on purpose", False)


@pytest.mark.parametrize("broken", ["flipped", "shifted", "cropped"])
def test_detection_guard_fails_gross_breakage(broken: str, blob_photos: list[Path]) -> None:
    """The reduced row's detection bounds are loose (mAP is the contract) but not vacuous: through a
    detector that follows the content, the real reduced decode passes them and a decode returning a
    flipped, shifted or cropped image fails them."""
    backend = _BrightBoxBackend()
    for name in REDUCED:
        assert_decode_detections_close(backend, name, blob_photos, IMGSZ, BLOB_NAMES)
    with pytest.raises(OutputMismatch, match="has no match"):
        assert_decode_detections_close(
            backend, _broken_reduced(broken), blob_photos, IMGSZ, BLOB_NAMES, DECODE_TOLERANCES[REDUCED[0]]
        )


# -- reduced decode: detections within the row (real backend) --------------------------------------


def _steps_too_far(path: Path, imgsz: int, steps: int = 1) -> Decoded:
    """Broken on purpose: the reduced decode, then halved ``steps`` more times (a factor libjpeg would
    pick ``steps`` steps too far), so the letterbox enlarges a too-small image."""
    d = DECODERS["opencv-reduced"].decode(path, imgsz)
    h, w = d.rgb.shape[:2]
    k = 2**steps
    rgb = cv2.resize(d.rgb, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    return Decoded(rgb, d.full_shape, d.factor * k)


def _one_step_too_far(path: Path, imgsz: int) -> Decoded:
    return _steps_too_far(path, imgsz, 1)


def _two_steps_too_far(path: Path, imgsz: int) -> Decoded:
    return _steps_too_far(path, imgsz, 2)


@pytest.fixture(scope="module")
def photo_images() -> list[Path]:
    """The first two photos of each deployment size (tags none, 6, 3, 1, 4, 5): the cached set's own."""
    return load_dataset(photo_dataset(PhotoConfig(per_size=2))).images("val")


@pytest.mark.slow
@pytest.mark.parametrize("name", REDUCED)
def test_reduced_decode_detections_within_bound(name: str, workbench, photo_images: list[Path]) -> None:
    """The committed baseline on ONNX Runtime finds the same garments through a reduced decode as
    through the reference, within the decoder's tolerance row (IoU, score, unmatched share)."""
    backend = workbench.load("onnxruntime")
    assert_decode_detections_close(backend, name, photo_images, workbench.imgsz, workbench.names)


@pytest.mark.slow
def test_detection_bound_fails_a_flipped_decode(workbench, photo_images: list[Path]) -> None:
    """With the real model too, the row's gross-breakage guard is not vacuous: a reduced decode whose
    image comes back mirrored fails it (most garments then have no counterpart)."""
    backend = workbench.load("onnxruntime")
    with pytest.raises(OutputMismatch, match="has no match"):
        assert_decode_detections_close(
            backend,
            _broken_reduced("flipped"),
            photo_images,
            workbench.imgsz,
            workbench.names,
            DECODE_TOLERANCES[REDUCED[0]],
        )


def test_shape_contract_fails_one_step_too_far(files: list[Path]) -> None:
    """A decode one DCT factor too far is no gross breakage of detections (the row's guard need not
    catch it, and on the 24-photo set it keeps mAP within the row), but the reduced decode's shape
    contract refuses it: a factor libjpeg lacks, or one the letterbox must enlarge."""
    reducible = [p for p in files if DECODERS["opencv-reduced"].decode(p, IMGSZ).factor > 1]
    assert len(reducible) >= 16
    for p in reducible:
        with pytest.raises(StageMismatch, match="factor"):
            assert_reduced_shape(DECODERS[REFERENCE].decode(p, IMGSZ), _one_step_too_far(p, IMGSZ), IMGSZ)


@pytest.fixture(scope="module")
def photo_set() -> Dataset:
    """The 24-photo set ``scripts/measure_decode.py`` measured the row's mAP drop on."""
    return load_dataset(photo_dataset(PhotoConfig()))


@pytest.fixture(scope="module")
def reference_accuracy(workbench, photo_set: Dataset) -> dict:
    backend = workbench.load("onnxruntime")
    return evaluate(backend, photo_set, imgsz=workbench.imgsz, decoder=REFERENCE).to_dict()


@pytest.mark.slow
@pytest.mark.parametrize("name", REDUCED)
def test_reduced_decode_accuracy_within_bound(
    name: str, workbench, photo_set: Dataset, reference_accuracy: dict
) -> None:
    """mAP50, mAP50-95 and per-class mAP50 on the photo set's labels through a reduced decode stay
    within the row's map_drop / class_map_drop of the reference decode's."""
    backend = workbench.load("onnxruntime")
    assert_decode_accuracy_close(backend, name, photo_set, workbench.imgsz, reference=reference_accuracy)


@pytest.mark.slow
def test_accuracy_bound_fails_two_steps_too_far(
    workbench, photo_set: Dataset, reference_accuracy: dict
) -> None:
    """A decode a quarter of the reduced size per axis loses mAP past the row (measured: mAP50
    0.681 against 0.712, shoes' mAP50 0.152 against 0.293); one step too far stays within it on
    this set, which the shape contract above refuses."""
    backend = workbench.load("onnxruntime")
    broken = DecodeVariant("two-steps-too-far", _two_steps_too_far, "broken on purpose", False)
    with pytest.raises(OutputMismatch, match="accuracy differs"):
        assert_decode_accuracy_close(
            backend,
            broken,
            photo_set,
            workbench.imgsz,
            DECODE_TOLERANCES[REDUCED[0]],
            reference=reference_accuracy,
        )


def test_load_image_rejects_a_factor_libjpeg_lacks(files: list[Path]) -> None:
    with pytest.raises(ValueError, match="draft_factor"):
        load_image(files[0], draft_factor=3)


def test_cmyk_jpeg_bytes_are_what_the_fixture_says(files: list[Path]) -> None:
    """The odd files really are odd (so the fallbacks above are exercised)."""
    modes = {p.name: Image.open(io.BytesIO(p.read_bytes())).mode for p in files[-7:]}
    assert modes == {
        "grey.jpg": "L",
        "cmyk.jpg": "CMYK",
        "tagged.png": "RGB",
        "palette.png": "P",
        "plain.png": "RGB",
        "grey.png": "L",
        "gamma.png": "RGB",
    }
    read = {}
    for p in files[-7:]:
        if p.suffix == ".png":
            with Image.open(p) as im:
                read[p.name] = _plain_png(dict(im.info), p.read_bytes())
    assert read == {
        "tagged.png": False,
        "palette.png": False,
        "plain.png": True,
        "grey.png": True,
        "gamma.png": False,
    }
