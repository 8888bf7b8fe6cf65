"""Image files to RGB: header-only identification, EXIF orientation, any Pillow mode, bombs refused.

Data, not runtime: the VOC converter reads image headers here, and ``runtimes.preprocess`` decodes
paths through ``load_image`` before letterboxing.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from detbench.errors import ImageError

MAX_PIXELS = 64_000_000
"""Images with more pixels than this (read from the header) are refused before decoding."""

DCT_FACTORS = (1, 2, 4, 8)
"""The reductions libjpeg's scaled IDCT offers that Pillow's ``draft`` and OpenCV's
``IMREAD_REDUCED_*`` both expose."""

SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "JPEG2000", "AVIF")
"""Raster formats ``load_image`` decodes. Others (EPS, PDF, ICO, ...) are refused: EPS alone would
hand untrusted files to Ghostscript."""


_strict_lock = threading.Lock()
_strict_depth = 0
_strict_saved = False


@contextmanager
def _strict_truncation() -> Iterator[None]:
    """Force ``ImageFile.LOAD_TRUNCATED_IMAGES`` off while we decode, whatever the caller set.

    A truncated file loaded leniently is a grey half-image that silently skews accuracy. The flag is
    a Pillow global, so nested and concurrent loads share one override and the last one restores it.
    """
    global _strict_depth, _strict_saved
    with _strict_lock:
        if _strict_depth == 0:
            _strict_saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_depth += 1
    try:
        yield
    finally:
        with _strict_lock:
            _strict_depth -= 1
            if _strict_depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _strict_saved


def _identify(fh, formats: Sequence[str], filename: str) -> ImageFile.ImageFile | None:
    """Pillow's identification loop over ``formats``: reads headers, decodes nothing.

    Not ``Image.open``: ultralytics replaces it with a wrapper that, on a file Pillow cannot identify,
    tries to install and import pi-heif; and its decompression-bomb warning would pre-empt our limit.
    """
    Image.init()
    fh.seek(0)
    prefix = fh.read(16)
    for fmt in formats:
        if fmt not in Image.OPEN:
            continue
        factory, accept = Image.OPEN[fmt]
        ok = accept(prefix) if accept else True
        if not ok or isinstance(ok, str):  # a str means "this format, but its codec is missing"
            continue
        fh.seek(0)
        try:
            return factory(fh, filename)
        except (SyntaxError, IndexError, TypeError, struct.error):  # not this format after all
            continue
    return None


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _why_unidentified(fh, head: bytes) -> str:
    """Reason for a file none of the supported decoders accepted."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        if w == 0 or h == 0:
            return f"zero-size image ({w}x{h} in the PNG header)"
    try:
        other = _identify(fh, [f for f in Image.ID if f not in SUPPORTED_FORMATS], "")
    except Exception:
        other = None
    if other is not None:
        return f"unsupported image format {other.format}; supported: {', '.join(SUPPORTED_FORMATS)}"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return f"corrupt or truncated {name} header"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<svg", b"<?xml")) and b"<svg" in lowered:
        return "unsupported format: SVG is a vector format; rasterise it to PNG first"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return "not an image: the file holds text"
    return "not an image: no supported decoder recognises its contents"


def open_header(path: str | os.PathLike) -> Image.Image:
    """Open ``path`` reading its header only (no pixel decode), without ultralytics' patched
    ``Image.open``; the caller closes it. Raises ImageError naming the file."""
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ImageError(path, f"cannot read file: {exc.strerror or exc}") from exc
    head = fh.read(512)
    try:
        img = _identify(fh, SUPPORTED_FORMATS, str(path))
    except Exception as exc:
        fh.close()
        raise ImageError(path, f"cannot read image header: {exc}") from exc
    if img is None:
        reason = _why_unidentified(fh, head)
        fh.close()
        raise ImageError(path, reason)
    img._exclusive_fp = True  # Image.close() closes the file we opened
    return img


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = MAX_PIXELS,
    draft_above: int | None = None,
    draft_factor: int = 1,
) -> Image.Image:
    """Decode ``path`` to an RGB image with its EXIF orientation applied.

    ``max_pixels`` refuses decompression bombs from the header alone, before decoding (None: no
    limit). ``draft_above``: a JPEG with more pixels than this is decoded at a reduced scale
    (``Image.draft``, 1/2 to 1/8) to bound memory; the result is then smaller than the file. Off by
    default, because box coordinates must refer to the full-resolution image. ``draft_factor`` (1, 2,
    4 or 8): a JPEG is decoded at exactly 1/draft_factor per axis by libjpeg's scaled IDCT, sides
    rounded up, when both its sides are at least that many pixels; ``runtimes.decode`` picks it.
    """
    if draft_factor not in DCT_FACTORS:
        raise ValueError(f"draft_factor must be one of {DCT_FACTORS}, got {draft_factor!r}")
    path = Path(path)
    if not path.exists():
        raise ImageError(path, "file not found")
    if not path.is_file():
        raise ImageError(path, "not a regular file")
    try:
        size = path.stat().st_size
        fh = path.open("rb")
    except OSError as exc:
        raise ImageError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if size == 0:
        fh.close()
        raise ImageError(path, "empty file (0 bytes)")
    with fh:
        head = fh.read(512)
        try:
            img = _identify(fh, SUPPORTED_FORMATS, str(path))
        except MemoryError:
            raise
        except Exception as exc:
            raise ImageError(path, f"cannot read image header: {exc}") from exc
        if img is None:
            raise ImageError(path, _why_unidentified(fh, head))

        w, h = img.size
        if w == 0 or h == 0:
            raise ImageError(path, f"zero-size image ({w}x{h})")
        if max_pixels is not None and w * h > max_pixels:
            raise ImageError(
                path,
                f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} pixels (MAX_PIXELS); "
                "refused as a possible decompression bomb",
            )
        try:
            if draft_above is not None and img.format in ("JPEG", "MPO") and w * h > draft_above:
                scale = math.sqrt(w * h / draft_above)
                img.draft(img.mode, (max(1, math.ceil(w / scale)), max(1, math.ceil(h / scale))))
            elif draft_factor > 1 and img.format in ("JPEG", "MPO") and min(w, h) >= draft_factor:
                # Asking for floor(side / f) makes Pillow's scale choice exactly f (sides >= f).
                img.draft(img.mode, (w // draft_factor, h // draft_factor))
            # Some plugins re-check frame sizes against Pillow's own limit while decoding; ours has
            # already decided, and pytest would turn the warning into an error.
            with _strict_truncation(), warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()  # decode everything now, inside the try, so truncation raises here
            img = ImageOps.exif_transpose(img)
        except MemoryError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageError(path, f"refused as a possible decompression bomb: {exc}") from exc
        except Exception as exc:  # corrupt data makes Pillow's plugins raise many exception types
            reason = str(exc) or type(exc).__name__
            raise ImageError(path, f"truncated or corrupt {img.format} data: {reason}") from exc
    return to_rgb(img, source=str(path))


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded (32768 -> 128, 65535 -> 255); integer maths, so exact."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def to_rgb(img: Image.Image, source: str = "<array>") -> Image.Image:
    """Convert ``img`` from any common Pillow mode to RGB (``img`` itself if already RGB).

    Alpha is dropped, not composited, as ``cv2.imread`` does, so we see what ultralytics sees.
    16-bit modes (I;16*, and I, read as 16-bit data as older Pillow decoded 16-bit PNGs) are scaled
    by 255/65535, not clamped; I values outside 0..65535 are clipped. F is taken to be on Pillow's
    own 0..255 scale (as its F -> L conversion does): rounded, clipped, NaN -> 0.
    """
    w, h = img.size
    if w == 0 or h == 0:
        raise ImageError(source, f"zero-size image ({w}x{h})")
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        grey = _scale_16bit(np.asarray(img))
    elif mode == "F":
        grey = np.rint(np.nan_to_num(np.clip(np.asarray(img), 0, 255), nan=0.0)).astype(np.uint8)
    elif mode == "PA" or (mode == "P" and "transparency" in img.info):
        # Through RGBA: a direct P -> RGB conversion warns when the transparency is a byte string.
        return img.convert("RGBA").convert("RGB")
    else:
        try:
            return img.convert("RGB")
        except ValueError as exc:
            raise ImageError(source, f"unsupported pixel mode {mode!r}: {exc}") from exc
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))
