"""The one image preprocessing every backend shares: decode, convert to RGB, letterbox, batch.

``letterbox`` reproduces ultralytics' ``LetterBox(auto=False, scaleup=True, center=True)`` pixel for
pixel (cv2 INTER_LINEAR, pad 114, the ``round(d +- 0.1)`` split of the padding), and
``unletterbox_boxes`` agrees with ``ultralytics.utils.ops.scale_boxes``, so every backend sees the
same tensor and reports boxes in the same coordinates as ``YOLO.predict``.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps

from detbench.errors import ImageError

MAX_PIXELS = 64_000_000
"""Images with more pixels than this (read from the header) are refused before decoding."""

SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "JPEG2000", "AVIF")
"""Raster formats ``load_image`` decodes. Others (EPS, PDF, ICO, ...) are refused: EPS alone would
hand untrusted files to Ghostscript."""

PAD_VALUE = 114  # ultralytics' letterbox grey

Mode = Literal["letterbox", "resize"]
ImageLike = Image.Image | np.ndarray | str | os.PathLike


@dataclass(frozen=True)
class LetterboxInfo:
    """How one image was mapped onto the model input, enough to map boxes back."""

    orig_shape: tuple[int, int]  # (h, w) of the original image
    new_shape: tuple[int, int]  # (h, w) of the model input, padding included
    ratio: tuple[float, float]  # (rw, rh) scale factors; equal for letterbox
    pad: tuple[int, int]  # (left, top) padding in pixels
    mode: Mode

    @property
    def resized_shape(self) -> tuple[int, int]:
        """(h, w) of the image content inside the model input, rounded as LetterBox rounds it."""
        h, w = self.orig_shape
        rw, rh = self.ratio
        return max(round(h * rh), 1), max(round(w * rw), 1)


# --------------------------------------------------------------------------------------- decoding

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
) -> Image.Image:
    """Decode ``path`` to an RGB image with its EXIF orientation applied.

    ``max_pixels`` refuses decompression bombs from the header alone, before decoding (None: no
    limit). ``draft_above``: a JPEG with more pixels than this is decoded at a reduced scale
    (``Image.draft``, 1/2 to 1/8) to bound memory; the result is then smaller than the file. Off by
    default, because box coordinates must refer to the full-resolution image.
    """
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


# ---------------------------------------------------------------------------- geometry and batching


def _target(imgsz: int | tuple[int, int]) -> tuple[int, int]:
    """``imgsz`` as (h, w): an int is a square."""
    if isinstance(imgsz, (int, np.integer)) and not isinstance(imgsz, bool):
        h = w = int(imgsz)
    elif (
        isinstance(imgsz, (tuple, list))
        and len(imgsz) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in imgsz)
    ):
        h, w = (int(v) for v in imgsz)
    else:
        raise ValueError(f"imgsz must be a positive int or an (h, w) pair of ints, got {imgsz!r}")
    if h <= 0 or w <= 0:
        raise ValueError(f"imgsz must be positive, got {imgsz!r}")
    return h, w


def _check_rgb(rgb: np.ndarray, name: str = "rgb") -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        desc = f"shape {rgb.shape} dtype {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"{name}: expected an HxWx3 uint8 RGB array, got {desc}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{name}: zero-size image array of shape {rgb.shape}")
    return np.ascontiguousarray(rgb)  # cv2 refuses negative strides, e.g. a BGR<->RGB view


def letterbox(
    rgb: np.ndarray, imgsz: int | tuple[int, int], pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize keeping the aspect ratio and pad to ``imgsz`` exactly as ultralytics' LetterBox does.

    Per-channel maths, so RGB in gives RGB out (LetterBox itself is usually fed BGR).
    """
    arr = _check_rgb(rgb)
    if not 0 <= int(pad_value) <= 255:
        raise ValueError(f"pad_value must be within 0..255, got {pad_value!r}")
    th, tw = _target(imgsz)
    h, w = arr.shape[:2]
    r = min(th / h, tw / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (tw - new_w) / 2, (th - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if (h, w) != (new_h, new_w):
        arr = cv2.resize(arr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = cv2.copyMakeBorder(arr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(int(pad_value),) * 3)
    return out, LetterboxInfo((h, w), (th, tw), (r, r), (left, top), "letterbox")


def resize(rgb: np.ndarray, imgsz: int | tuple[int, int]) -> tuple[np.ndarray, LetterboxInfo]:
    """Stretch to ``imgsz`` ignoring the aspect ratio (cv2 INTER_LINEAR), the original study's way."""
    arr = _check_rgb(rgb)
    th, tw = _target(imgsz)
    h, w = arr.shape[:2]
    out = arr.copy() if (h, w) == (th, tw) else cv2.resize(arr, (tw, th), interpolation=cv2.INTER_LINEAR)
    return out, LetterboxInfo((h, w), (th, tw), (tw / w, th / h), (0, 0), "resize")


def _norm3(value: Sequence[float] | None, name: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be 3 finite numbers (R, G, B in 0-1 units), got {value!r}")
    return arr.astype(np.float32)


def _as_rgb_array(item: ImageLike, index: int) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return _check_rgb(item, f"images[{index}]")
    if isinstance(item, Image.Image):
        source = getattr(item, "filename", "") or f"<images[{index}]>"
        return np.asarray(to_rgb(item, source=source))
    if isinstance(item, (str, os.PathLike)):
        return np.asarray(load_image(item))
    raise TypeError(
        f"images[{index}]: expected a PIL image, a path or an HxWx3 uint8 array, got {type(item).__name__}"
    )


def preprocess(
    images: Sequence[ImageLike],
    imgsz: int | tuple[int, int] = 128,
    *,
    mode: Mode = "letterbox",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """Batch ``images`` into one contiguous NCHW float32 array of RGB values in [0, 1].

    ``mean``/``std`` (R, G, B in 0-1 units) normalise as ``(x - mean) / std``; the default is none,
    which is what YOLOv8 was trained with.
    """
    if mode not in ("letterbox", "resize"):
        raise ValueError(f"mode must be 'letterbox' or 'resize', got {mode!r}")
    _target(imgsz)
    if isinstance(images, (np.ndarray, Image.Image, str, os.PathLike)):
        raise TypeError("images must be a sequence of images; wrap a single image in a list")
    if len(images) == 0:
        raise ValueError("images is empty: nothing to preprocess")
    m, s = _norm3(mean, "mean"), _norm3(std, "std")
    if s is not None and np.any(s == 0):
        raise ValueError(f"std must not contain zeros, got {std!r}")
    fit = letterbox if mode == "letterbox" else resize
    arrays, infos = [], []
    for i, item in enumerate(images):
        arr, info = fit(_as_rgb_array(item, i), imgsz)
        arrays.append(arr)
        infos.append(info)
    x = np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2), dtype=np.float32)
    x /= np.float32(255)  # float32 division, as ultralytics' predictor does it
    if m is not None:
        x -= m[None, :, None, None]
    if s is not None:
        x /= s[None, :, None, None]
    return x, infos


def unletterbox_boxes(xyxy: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map (K, 4) xyxy boxes from model-input pixels back to original-image pixels, clipped.

    Same arithmetic, in the same order, as ``ultralytics.utils.ops.scale_boxes``: subtract the
    padding, divide by the per-axis gain of the rounded resized size, clip. Returns a new array.
    """
    boxes = np.array(xyxy, copy=True)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"xyxy: expected a (K, 4) array of boxes, got shape {boxes.shape}")
    if not np.issubdtype(boxes.dtype, np.floating):
        boxes = boxes.astype(np.float64)
    h0, w0 = info.orig_shape
    rh, rw = info.resized_shape
    gain_x, gain_y = rw / w0, rh / h0
    pad_x, pad_y = info.pad
    boxes[:, [0, 2]] -= pad_x
    boxes[:, [1, 3]] -= pad_y
    boxes[:, [0, 2]] /= gain_x
    boxes[:, [1, 3]] /= gain_y
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w0)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h0)
    return boxes
