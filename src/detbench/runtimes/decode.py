"""The pipeline's first stage: an image file to the RGB uint8 (H, W, 3) array ``preprocess`` takes.

Registered variants, each with a one-line description and whether it claims the reference's pixels
bit for bit:

- ``pillow``: the reference, what the pipeline has always done (``data.images.load_image``: Pillow at
  full size, EXIF orientation applied, any mode to RGB, bombs and truncated files refused).
  ultralytics' ``predict`` also shows the EXIF-corrected image (``cv2.imdecode`` applies the tag).
- ``opencv``: ``cv2.imdecode`` for baseline JPEGs (RGB or grey), the tag applied by a pixel
  permutation, and for plain 8-bit RGB or grey PNGs (``_plain_png``: nothing the two decoders might
  treat differently); every other file goes to the reference, so refusals and odd modes stay identical.
  Pillow's and OpenCV's wheels both bundle libjpeg-turbo (same islow IDCT, same fancy upsampling).
- ``pillow-reduced`` / ``opencv-reduced``: libjpeg's scaled IDCT (``Image.draft`` /
  ``IMREAD_REDUCED_COLOR_*``) at the largest factor (2, 4, 8) whose decoded image the letterbox still
  shrinks, never enlarges, to the model input (``reduction_factor``); not identical, so they carry a
  measured detection bound (``detbench.verify.decode``). Boxes found on the reduced image map back to
  full-resolution pixels with ``Decoded.boxes_to_full``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detbench.data.images import DCT_FACTORS, MAX_PIXELS, load_image, open_header
from detbench.runtimes.preprocess import _target

REFERENCE = "pillow"
EXIF_ORIENTATION = 0x0112
_JPEG_EOI = b"\xff\xd9"
_PNG_IEND = b"IEND\xaeB`\x82"
# Pillow's info keys for the PNG chunks that could make two decoders differ (tRNS, gAMA, iCCP, sRGB,
# cHRM, eXIf before the pixels).
_PNG_ANCILLARY = frozenset({"transparency", "gamma", "icc_profile", "srgb", "chromaticity", "exif"})
_CV2_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
# EXIF orientation -> the stored pixels as displayed: Pillow's exif_transpose as array views.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: a.transpose(1, 0, 2)[::-1],
}

Source = str | os.PathLike
ImageSize = int | tuple[int, int]


@dataclass(frozen=True)
class Decoded:
    """One decoded image: the array ``preprocess`` takes, and how it relates to the full image."""

    rgb: np.ndarray  # (h, w, 3) uint8 RGB, EXIF orientation applied, C-contiguous
    full_shape: tuple[int, int]  # (h, w) of the displayed image at full resolution
    factor: int  # 1: full size; f: libjpeg decoded 1/f per axis, sides rounded up

    def boxes_to_full(self, xyxy: np.ndarray) -> np.ndarray:
        """(K, 4) xyxy boxes on ``rgb`` to full-resolution pixels, clipped; a new array.

        Reduced pixel i is the DCT average of full pixels [i*f, (i+1)*f), so edges scale by f exactly
        (not by full/reduced, which the rounded-up last pixel would skew).
        """
        boxes = np.array(xyxy, copy=True)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"xyxy: expected a (K, 4) array of boxes, got shape {boxes.shape}")
        if not np.issubdtype(boxes.dtype, np.floating):
            boxes = boxes.astype(np.float64)
        if self.factor == 1:
            return boxes
        h, w = self.full_shape
        boxes *= self.factor
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return boxes


def reduced_shape(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """(h, w) of an image of ``shape`` decoded at DCT ``factor``: libjpeg rounds each side up."""
    return -(-shape[0] // factor), -(-shape[1] // factor)


def reduction_factor(shape: tuple[int, int], imgsz: ImageSize) -> int:
    """The largest DCT factor f for an (h, w) image whose decoded (ceil(h/f), ceil(w/f)) the
    letterbox to ``imgsz`` still shrinks or keeps (so no detail the model input holds is lost), and
    whose sides are both at least f; 1 when none is."""
    h, w = shape
    th, tw = _target(imgsz)
    for f in sorted(DCT_FACTORS, reverse=True):
        hf, wf = reduced_shape(shape, f)
        if f == 1 or (min(h, w) >= f and min(th / hf, tw / wf) <= 1):
            return f
    return 1


def _displayed(size_wh: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(h, w) shown for a stored (w, h) with this EXIF orientation."""
    w, h = size_wh
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _reference(path: Source) -> Decoded:
    rgb = np.asarray(load_image(path))
    return Decoded(rgb, rgb.shape[:2], 1)


def decode_pillow(path: Source, imgsz: ImageSize | None = None) -> Decoded:
    """The reference: ``load_image`` at full size (``imgsz`` is not used)."""
    return _reference(path)


def decode_pillow_reduced(path: Source, imgsz: ImageSize) -> Decoded:
    """Pillow with ``Image.draft`` at ``reduction_factor`` for a JPEG; other files at full size."""
    with open_header(path) as header:
        fmt, size = header.format, header.size
        # Only a JPEG is drafted; the format is checked first because Pillow's getexif() on a PNG
        # decodes the whole image to find an eXIf chunk after the pixels.
        if fmt not in ("JPEG", "MPO"):
            return _reference(path)
        try:
            orientation = int(header.getexif().get(EXIF_ORIENTATION, 1))
        except Exception:  # a malformed EXIF block: the reference decides what it means
            return _reference(path)
    full = _displayed(size, orientation)
    f = reduction_factor(full, imgsz)
    rgb = np.asarray(load_image(path, draft_factor=f))
    if rgb.shape[:2] == full:  # e.g. a multi-frame MPO, which Pillow does not draft
        return Decoded(rgb, full, 1)
    return Decoded(rgb, full, f)


def _plain_png(info: dict, data: bytes) -> bool:
    """A PNG whose pixels cv2 decodes exactly as the reference does: 8-bit grey or RGB, not
    interlaced, complete (ends with IEND), and nothing either decoder might apply (transparency,
    gamma, colour profile, EXIF anywhere in the file: a false match only means the reference)."""
    return (
        len(data) > 28
        and data[24] == 8  # IHDR bit depth
        and data[25] in (0, 2)  # grey or RGB
        and data[28] == 0  # not interlaced
        and data.endswith(_PNG_IEND)
        and not _PNG_ANCILLARY.intersection(info)
        and b"eXIf" not in data
    )


def _opencv(path: Source, imgsz: ImageSize | None) -> Decoded:
    with open_header(path) as header:  # the reference's header checks, no pixels decoded
        fmt, mode, (w, h), info = header.format, header.mode, header.size, dict(header.info)
        # CMYK, 12-bit or multi-frame JPEGs, other formats and bombs: the reference decodes or refuses.
        # Checked before getexif(), which on a PNG decodes the whole image (an eXIf chunk may follow
        # the pixels).
        if fmt not in ("JPEG", "PNG") or mode not in ("RGB", "L") or w * h > MAX_PIXELS:
            return _reference(path)
        orientation = 1
        if fmt == "JPEG":
            try:
                orientation = int(header.getexif().get(EXIF_ORIENTATION, 1))
            except Exception:  # a malformed EXIF block: the reference decides what it means
                return _reference(path)
    data = Path(path).read_bytes()
    # libjpeg only warns on a truncated file and cv2 returns a grey-filled image; the reference refuses.
    if fmt == "JPEG" and not data.endswith(_JPEG_EOI):
        return _reference(path)
    if fmt == "PNG" and not _plain_png(info, data):
        return _reference(path)
    full = _displayed((w, h), orientation)
    # A PNG has no DCT to reduce in: full size.
    f = 1 if imgsz is None or fmt == "PNG" else reduction_factor(full, imgsz)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _CV2_FLAGS[f] | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        return _reference(path)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if orientation in _ORIENT:
        rgb = np.ascontiguousarray(_ORIENT[orientation](rgb))
    return Decoded(rgb, full, f)


def decode_opencv(path: Source, imgsz: ImageSize | None = None) -> Decoded:
    """``cv2.imdecode`` at full size for a baseline JPEG or a plain 8-bit PNG; anything else through
    the reference."""
    return _opencv(path, None)


def decode_opencv_reduced(path: Source, imgsz: ImageSize) -> Decoded:
    """``cv2.imdecode`` with ``IMREAD_REDUCED_COLOR_f`` at ``reduction_factor`` for a baseline JPEG;
    a plain 8-bit PNG at full size as ``decode_opencv`` decodes it."""
    return _opencv(path, imgsz)


@dataclass(frozen=True)
class DecodeVariant:
    """A registered decoder: ``decode(path, imgsz)``, what it is, and what it claims."""

    name: str
    decode: Callable[[Source, ImageSize], Decoded]
    description: str
    identical: bool  # claims the reference's array bit for bit, on every file


DECODERS: dict[str, DecodeVariant] = {
    v.name: v
    for v in (
        DecodeVariant(
            "pillow", decode_pillow, "Pillow at full size, EXIF applied (load_image): the reference", True
        ),
        DecodeVariant(
            "opencv",
            decode_opencv,
            "cv2.imdecode at full size for baseline JPEGs and plain PNGs, else the reference",
            True,
        ),
        DecodeVariant(
            "pillow-reduced",
            decode_pillow_reduced,
            "Pillow Image.draft: JPEG DCT-decoded at 1/2..1/8, never below the model input",
            False,
        ),
        DecodeVariant(
            "opencv-reduced",
            decode_opencv_reduced,
            "cv2 IMREAD_REDUCED_COLOR_2/4/8: JPEG DCT-decoded at 1/2..1/8, never below the model input",
            False,
        ),
    )
}


def decode(name: str, path: Source, imgsz: ImageSize) -> Decoded:
    """Decode ``path`` with the registered variant ``name`` for a model input of ``imgsz``."""
    try:
        variant = DECODERS[name]
    except KeyError:
        raise ValueError(f"unknown decoder {name!r}; registered: {', '.join(DECODERS)}") from None
    return variant.decode(path, imgsz)
