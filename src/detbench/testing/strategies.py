"""Hypothesis strategies for images, image files, batches and raw heads, shared by detbench's tests
and its users.

Every drawn image is built from a handful of drawn numbers (size, mode, content kind, a 32-bit
seed) with one ``numpy.random.Generator``, never pixel by pixel, so examples are cheap to build
and shrink well. ``img.info["detbench.content"]`` and ``["detbench.seed"]`` record how an image
was made, for debugging a failing example; ``perturbed_images`` draws from real image files
(a user's val split) and records ``"val"`` and the file in ``["detbench.source"]``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from PIL import Image, ImageEnhance

from detbench.data.images import load_image
from detbench.data.synth import render_scene
from detbench.runtimes.postprocess import CONF, IOU, MAX_DET
from detbench.runtimes.preprocess import LetterboxInfo, letterbox_geometry

MODES = ("L", "RGB", "RGBA", "P", "CMYK", "I;16")
CONTENTS = ("uniform", "noise", "gradient", "checkerboard", "scene")

_CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4, "P": 1, "CMYK": 4, "I;16": 1}
_SCENE_MIN_SIDE = 12  # synth.render_scene needs at least this on both sides
_SCENE_MAX_SIDE = 256
_SIZE_TIERS = (16, 64)  # most sides are small: examples stay fast, big ones still appear


def _side(min_side: int, max_side: int) -> st.SearchStrategy[int]:
    tops = sorted({min(max_side, max(min_side, t)) for t in _SIZE_TIERS} | {max_side})
    return st.sampled_from(tops).flatmap(lambda top: st.integers(min_side, top))


def _pattern(rng: np.random.Generator, kind: str, h: int, w: int, c: int, dtype: type) -> np.ndarray:
    """(h, w, c) array spanning the full range of ``dtype``; whole-array numpy, nothing per pixel."""
    top = int(np.iinfo(dtype).max)
    if kind == "noise":
        return rng.integers(0, top, (h, w, c), dtype=dtype, endpoint=True)
    a, b = rng.integers(0, top, (2, c), endpoint=True).astype(dtype)
    if kind == "uniform":
        return np.broadcast_to(a, (h, w, c)).copy()
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = np.arange(w, dtype=np.float32)[None, :] * np.float32(np.cos(angle)) + np.arange(
            h, dtype=np.float32
        )[:, None] * np.float32(np.sin(angle))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        return np.rint(a32 + (b32 - a32) * t[:, :, None]).astype(dtype)
    if kind == "checkerboard":
        cell = int(rng.integers(1, max(1, min(h, w) // 2) + 1))
        on = (np.arange(h)[:, None] // cell + np.arange(w)[None, :] // cell) % 2 == 1
        return np.where(on[:, :, None], a, b)
    raise ValueError(f"unknown content kind {kind!r}")


def _scene(rng: np.random.Generator, w: int, h: int, mode: str) -> Image.Image:
    # Rendered at a bounded size and resized, so a big scene still builds in milliseconds.
    scale = min(1.0, _SCENE_MAX_SIDE / max(w, h))
    rw, rh = max(round(w * scale), _SCENE_MIN_SIDE), max(round(h * scale), _SCENE_MIN_SIDE)
    rgb, _ = render_scene(rng, rw, rh)
    if (rw, rh) != (w, h):
        rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    if mode == "I;16":  # a real 16-bit image: spread 8-bit levels over 0..65535 and add fine detail
        grey = np.asarray(rgb.convert("L"), dtype=np.int32) * 257 + rng.integers(-128, 128, (h, w))
        return Image.frombytes("I;16", (w, h), np.clip(grey, 0, 65535).astype("<u2").tobytes())
    if mode == "RGBA":
        alpha = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
        return Image.fromarray(np.concatenate([np.asarray(rgb), alpha], axis=2))
    return rgb.convert(mode)


def _build(mode: str, kind: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if kind == "scene":
        img = _scene(rng, w, h, mode)
    else:
        arr = _pattern(rng, kind, h, w, _CHANNELS[mode], np.uint16 if mode == "I;16" else np.uint8)
        img = Image.frombytes(mode, (w, h), arr.astype("<u2" if mode == "I;16" else np.uint8).tobytes())
        if mode == "P":
            img.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    if mode == "P" and rng.random() < 0.3:
        img.info["transparency"] = int(rng.integers(0, 256))
    img.info["detbench.content"] = kind
    img.info["detbench.seed"] = seed
    return img


def images(
    min_side: int = 1,
    max_side: int = 1024,
    modes: Sequence[str] = MODES,
    contents: Sequence[str] = CONTENTS,
) -> st.SearchStrategy[Image.Image]:
    """PIL images of any aspect ratio, sides in ``min_side..max_side`` (mostly small), in ``modes``.

    I;16 images hold genuine 16-bit values (0..65535); P images carry a random palette and
    sometimes a transparent index; "scene" content is a synthetic fashion scene.
    """
    if not (isinstance(min_side, int) and isinstance(max_side, int) and 1 <= min_side <= max_side):
        raise InvalidArgument(
            f"need 1 <= min_side <= max_side, got min_side={min_side!r}, max_side={max_side!r}"
        )
    bad_modes = [m for m in modes if m not in MODES]
    if not modes or bad_modes:
        raise InvalidArgument(f"modes must be a non-empty subset of {MODES}, got {tuple(modes)!r}")
    bad_contents = [c for c in contents if c not in CONTENTS]
    if not contents or bad_contents:
        raise InvalidArgument(f"contents must be a non-empty subset of {CONTENTS}, got {tuple(contents)!r}")
    return st.builds(
        _build,
        mode=st.sampled_from(tuple(modes)),
        kind=st.sampled_from(tuple(contents)),
        w=_side(min_side, max_side),
        h=_side(min_side, max_side),
        seed=st.integers(0, 2**32 - 1),
    )


VAL_CONTENT = "val"  # img.info["detbench.content"] of an image drawn by perturbed_images
PERTURBED_MODES = ("RGB", "L", "RGBA", "P")  # what preprocess takes and a photo plausibly is


# The sides of the scenes the shipped suite draws for detections (test_equivalence) and of the user's
# val images it perturbs there.
SCENE_SIDES = {"min_side": 48, "max_side": 320}


def suite_scenes() -> st.SearchStrategy[Image.Image]:
    """The synthetic scenes ``test_detections_match_pytorch`` draws (RGB, L and P), so a measuring
    script draws the same ones."""
    return images(**SCENE_SIDES, modes=("RGB", "L", "P"), contents=("scene",))


def _perturb(
    source: Image.Image,
    path: str,
    crop: tuple[float, float, float, float],
    long_side: int,
    min_side: int,
    flip: bool,
    jitter: tuple[float, float, float],
    quality: int | None,
    mode: str,
) -> Image.Image:
    w, h = source.size
    # crop = (left, top, width, height) as fractions: the kept part is at least half of each side.
    cw, ch = max(1, round(w * crop[2])), max(1, round(h * crop[3]))
    left, top = round((w - cw) * crop[0]), round((h - ch) * crop[1])
    img = source.crop((left, top, left + cw, top + ch))
    scale = long_side / max(cw, ch)
    size = (max(min_side, round(cw * scale)), max(min_side, round(ch * scale)))
    img = img.resize(size, Image.Resampling.BILINEAR)
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhance, factor in zip((ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color), jitter):
        img = enhance(img).enhance(factor)
    if quality is not None:  # a lossy round trip, as a user's camera or web pipeline would give
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        img = Image.open(io.BytesIO(buf.getvalue()))
        img.load()
    img = img.convert(mode) if mode != img.mode else img
    img.info["detbench.content"] = VAL_CONTENT
    img.info["detbench.source"] = path
    return img


def perturbed_images(
    paths: Sequence[str | Path],
    min_side: int = 16,
    max_side: int = 1024,
    modes: Sequence[str] = PERTURBED_MODES,
) -> st.SearchStrategy[Image.Image]:
    """Real images from ``paths`` (e.g. a data.yaml's val split), perturbed as deployment would.

    Each example picks a file, then a crop keeping at least half of each side, a size whose long
    side is in ``min_side..max_side`` (any aspect the crop gives), a horizontal flip, brightness,
    contrast and saturation jitter, sometimes a JPEG re-encode at quality 10..95, and a mode from
    ``modes``. Every choice is a drawn number, so a fixed seed gives the same images. Files are
    decoded once (``load_image``) and kept for the strategy's life.
    """
    if not paths:
        raise InvalidArgument("perturbed_images needs at least one image path")
    if not (isinstance(min_side, int) and isinstance(max_side, int) and 1 <= min_side <= max_side):
        raise InvalidArgument(
            f"need 1 <= min_side <= max_side, got min_side={min_side!r}, max_side={max_side!r}"
        )
    bad_modes = [m for m in modes if m not in PERTURBED_MODES]
    if not modes or bad_modes:
        raise InvalidArgument(f"modes must be a non-empty subset of {PERTURBED_MODES}, got {tuple(modes)!r}")
    decoded: dict[str, Image.Image] = {}

    def load(path: str) -> Image.Image:
        if path not in decoded:
            decoded[path] = load_image(path)
        return decoded[path]

    fraction = st.floats(0.5, 1.0)
    factor = st.floats(0.6, 1.4)
    return st.builds(
        lambda path, **kw: _perturb(load(path), path, min_side=min_side, **kw),
        path=st.sampled_from([str(p) for p in paths]),
        crop=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0), fraction, fraction),
        long_side=_side(min_side, max_side),
        flip=st.booleans(),
        jitter=st.tuples(factor, factor, factor),
        quality=st.none() | st.integers(10, 95),
        mode=st.sampled_from(tuple(modes)),
    )


def batch_sizes(max_batch: int = 8) -> st.SearchStrategy[int]:
    """Batch sizes from 1 to ``max_batch``."""
    if not isinstance(max_batch, int) or max_batch < 1:
        raise InvalidArgument(f"max_batch must be an int >= 1, got {max_batch!r}")
    return st.integers(1, max_batch)


def image_batches(max_batch: int = 8, **image_kwargs) -> st.SearchStrategy[list[Image.Image]]:
    """Lists of 1 to ``max_batch`` images drawn from ``images(**image_kwargs)``."""
    return batch_sizes(max_batch).flatmap(lambda n: st.lists(images(**image_kwargs), min_size=n, max_size=n))


# -- image files: what the decode variants read ---------------------------------------------------

# The modes Pillow writes to each format the decode variants read (JPEG: no alpha, no palette).
FILE_MODES = {"JPEG": ("L", "RGB", "CMYK"), "PNG": ("L", "RGB", "RGBA", "P", "I;16")}
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes as drawn: format, stored mode and size, EXIF orientation tag (None: no
    EXIF block), and the drawn image's content kind and seed (see :func:`images`)."""

    data: bytes
    format: str  # "JPEG" or "PNG"
    mode: str
    size: tuple[int, int]  # (w, h) as stored, before the orientation is applied
    orientation: int | None
    content: str

    @property
    def suffix(self) -> str:
        return ".jpg" if self.format == "JPEG" else ".png"

    def write(self, folder: Path, stem: str = "drawn") -> Path:
        """Write the file into ``folder`` (overwriting one of the same name) and return its path."""
        path = Path(folder) / f"{stem}{self.suffix}"
        path.write_bytes(self.data)
        return path


def _encode(img: Image.Image, fmt: str, orientation: int | None, quality: int) -> EncodedImage:
    kw: dict = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        kw["exif"] = exif.tobytes()
    if fmt == "JPEG":
        kw["quality"] = quality
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    content = str(img.info.get("detbench.content", ""))
    return EncodedImage(buf.getvalue(), fmt, img.mode, img.size, orientation, content)


def image_files(
    source: st.SearchStrategy[Image.Image] | None = None,
    formats: Sequence[str] = tuple(FILE_MODES),
    min_side: int = 1,
    max_side: int = 1024,
) -> st.SearchStrategy[EncodedImage]:
    """Image files as the decode variants read them: a format from ``formats`` (JPEG, PNG), a mode
    Pillow writes to it, any size (mostly small), an EXIF orientation tag 1..8 or none, a JPEG
    quality 10..95. ``source``: draw the pixels from there instead (e.g. perturbed val images),
    converted to RGB when the format cannot hold their mode."""
    bad = [f for f in formats if f not in FILE_MODES]
    if not formats or bad:
        raise InvalidArgument(
            f"formats must be a non-empty subset of {tuple(FILE_MODES)}, got {tuple(formats)!r}"
        )

    def pixels(fmt: str) -> st.SearchStrategy[Image.Image]:
        if source is None:
            return images(min_side, max_side, modes=FILE_MODES[fmt])
        return source.map(lambda img: img if img.mode in FILE_MODES[fmt] else img.convert("RGB"))

    fmt = st.sampled_from(tuple(formats))
    return fmt.flatmap(
        lambda f: st.builds(
            _encode,
            pixels(f),
            st.just(f),
            st.none() | st.integers(1, 8),
            st.sampled_from([95, 75]) | st.integers(10, 95),
        )
    )


# -- raw detection heads: what the postprocess variants take --------------------------------------


@st.composite
def raw_heads(draw: st.DrawFn) -> tuple[np.ndarray, list[LetterboxInfo], tuple[str, ...]]:
    """A raw head batch (N, 4 + C, A) of crowded, often tied boxes and scores, with the letterbox info
    of an image of any size per row and C class names: the hard cases for an NMS."""
    # ultralytics reads a last axis of 6 as an end-to-end head (N, 300, 6), never a 6-anchor one.
    n, nc, anchors = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 24)),
        draw(st.integers(0, 400).filter(lambda a: a != 6)),
    )
    imgsz = draw(st.sampled_from([64, 128, 320]))
    spread = draw(st.sampled_from([4.0, 16.0, float(imgsz)]))  # small: many boxes on top of each other
    levels = draw(st.sampled_from([2, 5, 0]))  # quantised scores tie often; 0: continuous
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = np.zeros((n, 4 + nc, anchors))
    raw[:, :2] = rng.uniform(0, spread, (n, 2, anchors))
    raw[:, 2:4] = rng.choice([0.0, 1.0, 8.0, 30.0], (n, 2, anchors)) * rng.uniform(0.5, 1.5, (n, 2, anchors))
    if draw(st.booleans()):  # on a half-pixel grid: exact duplicates, touching edges, equal overlaps
        raw[:, :4] = np.round(raw[:, :4] * 2) / 2
    scores = rng.uniform(0, 1, (n, nc, anchors)) * (rng.uniform(size=(n, nc, anchors)) < 3 / nc)
    raw[:, 4:] = np.ceil(scores * levels) / levels if levels else scores
    infos = []
    for _ in range(n):
        h, w = draw(st.integers(1, 2000)), draw(st.integers(1, 2000))
        r, _, (top, left) = letterbox_geometry((h, w), (imgsz, imgsz))
        infos.append(LetterboxInfo((h, w), (imgsz, imgsz), (r, r), (left, top), "letterbox"))
    return raw.astype(dtype), infos, tuple(f"c{i}" for i in range(nc))


def nms_arguments() -> st.SearchStrategy[dict]:
    """``conf``, ``iou`` and ``max_det`` for an NMS: the defaults, the edges (0, 1, one box) and any."""
    return st.fixed_dictionaries(
        {
            "conf": st.sampled_from([CONF, 0.001, 0.5]) | st.floats(0, 1),
            "iou": st.sampled_from([IOU, 0.45, 0.0, 1.0]) | st.floats(0, 1),
            "max_det": st.sampled_from([MAX_DET, 1, 5]),
        }
    )
