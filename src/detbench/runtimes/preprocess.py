"""The one image preprocessing every backend shares: letterbox (or resize), normalise, batch.

``letterbox`` reproduces ultralytics' ``LetterBox(auto=False, scaleup=True, center=True)`` pixel for
pixel (cv2 INTER_LINEAR, pad 114, the ``round(d +- 0.1)`` split of the padding), and
``unletterbox_boxes`` agrees with ``ultralytics.utils.ops.scale_boxes``, so every backend sees the
same tensor and reports boxes in the same coordinates as ``YOLO.predict``. Files are decoded to RGB by
``detbench.data.images``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from detbench.data.images import load_image, to_rgb

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


def letterbox_geometry(
    shape: tuple[int, int], target: tuple[int, int]
) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """``(ratio, (new_h, new_w), (top, left))`` of LetterBox for an (h, w) image into (th, tw).

    The padding splits as ``round(d - 0.1)`` before and ``round(d + 0.1)`` after, which always sums to
    the whole padding, so ``bottom = th - new_h - top`` and ``right = tw - new_w - left``.
    """
    (h, w), (th, tw) = shape, target
    r = min(th / h, tw / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    top, left = round((th - new_h) / 2 - 0.1), round((tw - new_w) / 2 - 0.1)
    return r, (new_h, new_w), (top, left)


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
    r, (new_h, new_w), (top, left) = letterbox_geometry((h, w), (th, tw))
    bottom, right = th - new_h - top, tw - new_w - left
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


class LeanPreprocessor:
    """One image at a time into a reused ``(1, 3, H, W)`` float32 buffer, bit-identical to
    ``preprocess([image], imgsz, mode=mode)``.

    The image is resized straight into a preallocated uint8 canvas (padding filled only when the
    geometry changes), split into channel planes, widened and divided by 255 in float32 as the
    reference divides: no stacked batch, no transposed copy, no per-call allocation. The returned
    array is the buffer itself, overwritten by the next call, so consume it (run the model) first.
    Not thread-safe: give each thread its own instance.
    """

    def __init__(self) -> None:
        self._canvas = np.empty((0, 0, 3), np.uint8)
        self._planes = np.empty((3, 0, 0), np.uint8)
        self._buffer = np.empty((1, 3, 0, 0), np.float32)
        self._placed: tuple[int, int, int, int] | None = None  # (top, left, new_h, new_w) on the canvas

    def __call__(
        self, image: ImageLike, imgsz: int | tuple[int, int] = 128, mode: Mode = "letterbox"
    ) -> tuple[np.ndarray, LetterboxInfo]:
        if mode not in ("letterbox", "resize"):
            raise ValueError(f"mode must be 'letterbox' or 'resize', got {mode!r}")
        th, tw = _target(imgsz)
        rgb = _as_rgb_array(image, 0)
        h, w = rgb.shape[:2]
        if self._canvas.shape[:2] != (th, tw):
            self._canvas = np.empty((th, tw, 3), np.uint8)
            self._planes = np.empty((3, th, tw), np.uint8)
            self._buffer = np.empty((1, 3, th, tw), np.float32)
            self._placed = None
        if mode == "letterbox":
            r, (new_h, new_w), (top, left) = letterbox_geometry((h, w), (th, tw))
            info = LetterboxInfo((h, w), (th, tw), (r, r), (left, top), "letterbox")
        else:
            (new_h, new_w), (top, left) = (th, tw), (0, 0)
            info = LetterboxInfo((h, w), (th, tw), (tw / w, th / h), (0, 0), "resize")
        if self._placed != (top, left, new_h, new_w):
            # Content overwrites its own rectangle every call, so the padding only changes with it.
            self._canvas.fill(PAD_VALUE)
            self._placed = (top, left, new_h, new_w)
        view = self._canvas[top : top + new_h, left : left + new_w]
        if (h, w) == (new_h, new_w):
            np.copyto(view, rgb)
        else:
            out = cv2.resize(rgb, (new_w, new_h), dst=view, interpolation=cv2.INTER_LINEAR)
            if not np.shares_memory(out, self._canvas):  # OpenCV allocated after all: place it
                np.copyto(view, out)
        # Split, widen, divide: each pass contiguous, measured faster than one strided divide.
        cv2.split(self._canvas, list(self._planes))
        np.copyto(self._buffer[0], self._planes)
        np.divide(self._buffer, np.float32(255), out=self._buffer)
        return self._buffer, info


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
    return unletterbox_in_place(boxes, info)


def unletterbox_in_place(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """:func:`unletterbox_boxes` on a (K, 4) float array the caller owns, overwritten and returned."""
    h0, w0 = info.orig_shape
    rh, rw = info.resized_shape
    gain_x, gain_y = rw / w0, rh / h0
    pad_x, pad_y = info.pad
    # Column slices are views, so each step runs in place: the same per-element arithmetic as
    # scale_boxes' fancy-indexed copies, without the copies.
    xs, ys = boxes[:, 0::2], boxes[:, 1::2]
    xs -= pad_x
    ys -= pad_y
    xs /= gain_x
    ys /= gain_y
    np.clip(xs, 0, w0, out=xs)
    np.clip(ys, 0, h0, out=ys)
    return boxes
