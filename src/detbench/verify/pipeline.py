"""Holding pipeline variants to an "identical" claim: bit-equal model inputs, bit-equal detections.

Identical means identical: no tolerance, no ulp. The variants that claim it perform the reference's
float operations in the reference's order (``runtimes.preprocess.LeanPreprocessor``,
``runtimes.postprocess.numpy_nms``), so any difference is a bug, not rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detbench.runtimes.decode import Decoded
from detbench.runtimes.postprocess import Detections
from detbench.runtimes.preprocess import LetterboxInfo


class StageMismatch(AssertionError):
    """A pipeline variant's output differs from its stage reference's."""


def _first_difference(ref: np.ndarray, out: np.ndarray) -> str:
    """Where two same-shape, same-dtype arrays first differ in their bits, and the two values."""
    bits = np.dtype(f"u{ref.dtype.itemsize}")
    diff = np.ascontiguousarray(ref).view(bits) != np.ascontiguousarray(out).view(bits)
    where = tuple(int(i) for i in np.argwhere(diff)[0])
    first = f"first at {where}: {ref[where]!r} vs {out[where]!r}"
    return f"{int(diff.sum())} of {diff.size} elements differ, {first}"


def _assert_same_array(ref: np.ndarray, out: np.ndarray, what: str) -> None:
    if ref.shape != out.shape:
        raise StageMismatch(f"{what}: shape {out.shape}, reference {ref.shape}")
    if ref.dtype != out.dtype:
        raise StageMismatch(f"{what}: dtype {out.dtype}, reference {ref.dtype}")
    if ref.size and ref.tobytes() != np.ascontiguousarray(out).tobytes():
        raise StageMismatch(f"{what}: {_first_difference(ref, out)}")


def assert_same_decoded(ref: Decoded, out: Decoded, *, label: str = "") -> None:
    """``out`` (a decode variant's) is the reference's: the same RGB array bit for bit, full shape
    and factor."""
    prefix = f"{label}: " if label else ""
    _assert_same_array(ref.rgb, np.asarray(out.rgb), f"{prefix}decoded image")
    if (ref.full_shape, ref.factor) != (tuple(out.full_shape), out.factor):
        raise StageMismatch(
            f"{prefix}full shape {out.full_shape} at factor {out.factor}, "
            f"reference {ref.full_shape} at factor {ref.factor}"
        )


def assert_same_input(
    ref: tuple[np.ndarray, LetterboxInfo], out: tuple[np.ndarray, LetterboxInfo], *, label: str = ""
) -> None:
    """``out`` (a preprocess variant's ``(x, info)``) is the reference's bit for bit."""
    prefix = f"{label}: " if label else ""
    _assert_same_array(ref[0], out[0], f"{prefix}model input")
    if ref[1] != out[1]:
        raise StageMismatch(f"{prefix}letterbox info {out[1]}, reference {ref[1]}")


def assert_same_detections(ref: Sequence[Detections], out: Sequence[Detections], *, label: str = "") -> None:
    """``out`` (a postprocess variant's detections) is the reference's: same images, same detections
    in the same order, boxes, scores and classes bit for bit, same dtypes and class names."""
    prefix = f"{label}: " if label else ""
    if len(ref) != len(out):
        raise StageMismatch(f"{prefix}{len(out)} images of detections, reference {len(ref)}")
    for i, (r, o) in enumerate(zip(ref, out)):
        if len(r) != len(o):
            raise StageMismatch(f"{prefix}image {i}: {len(o)} detections, reference {len(r)}")
        for field in ("class_ids", "scores", "xyxy"):
            _assert_same_array(getattr(r, field), getattr(o, field), f"{prefix}image {i} {field}")
        if r.names != o.names:
            raise StageMismatch(f"{prefix}image {i}: class names {o.names}, reference {r.names}")
