"""Per-image pipeline stages as registered variants, the way backends are registered.

A variant is one way to run a stage (preprocess: image to model input; postprocess: raw head to
detections), described by a :class:`PipelineVariant`. Each stage has one reference variant, today's
code path, and every other variant states whether it claims output *identical* to the reference's;
``tests/test_pipeline.py`` holds every claiming variant to its claim (bit for bit) on drawn inputs.

Call signatures per stage (what ``variant.make()`` returns):

- preprocess: ``fn(image, imgsz, mode="letterbox") -> (x, info)``, ``x`` of shape (1, 3, H, W);
- postprocess: ``fn(raw, infos, names, *, conf, iou, max_det) -> list[Detections]``.

A stage is added (decode next) by naming it in :data:`STAGES` and :data:`REFERENCES` and
registering its variants with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from detbench.runtimes.postprocess import postprocess, postprocess_numpy
from detbench.runtimes.preprocess import ImageLike, LeanPreprocessor, LetterboxInfo, Mode, preprocess

STAGES = ("preprocess", "postprocess")
REFERENCES = {"preprocess": "reference", "postprocess": "ultralytics"}  # stage -> its reference variant


@dataclass(frozen=True)
class PipelineVariant:
    """One registered way to run a pipeline stage."""

    stage: str
    name: str
    description: str
    identical: bool  # claims output bit-identical to the stage's reference on every input
    make: Callable[[], Callable[..., Any]]  # a ready callable with its own state (e.g. buffers)

    @property
    def is_reference(self) -> bool:
        return REFERENCES.get(self.stage) == self.name


REGISTRY: dict[tuple[str, str], PipelineVariant] = {}


def register(variant: PipelineVariant) -> PipelineVariant:
    """Add ``variant`` to :data:`REGISTRY`; a stage outside :data:`STAGES` or a taken name is refused."""
    if variant.stage not in STAGES:
        raise ValueError(f"unknown pipeline stage {variant.stage!r}; stages: {', '.join(STAGES)}")
    if variant.is_reference and not variant.identical:
        raise ValueError(f"{variant.stage} reference {variant.name!r} must claim identical output")
    key = (variant.stage, variant.name)
    if key in REGISTRY:
        raise ValueError(f"{variant.stage} variant {variant.name!r} is already registered")
    REGISTRY[key] = variant
    return variant


def variants(stage: str) -> list[PipelineVariant]:
    """The variants of ``stage``, in registration order (the reference first)."""
    if stage not in STAGES:
        raise ValueError(f"unknown pipeline stage {stage!r}; stages: {', '.join(STAGES)}")
    return [v for (s, _), v in REGISTRY.items() if s == stage]


def get(stage: str, name: str) -> PipelineVariant:
    try:
        return REGISTRY[stage, name]
    except KeyError:
        known = ", ".join(v.name for v in variants(stage))
        raise ValueError(f"no {stage} variant {name!r}; registered: {known}") from None


def reference(stage: str) -> PipelineVariant:
    """The variant every other variant of ``stage`` is compared with."""
    return get(stage, REFERENCES[stage])


def _reference_preprocess(
    image: ImageLike, imgsz: int | tuple[int, int] = 128, mode: Mode = "letterbox"
) -> tuple[np.ndarray, LetterboxInfo]:
    x, infos = preprocess([image], imgsz, mode=mode)
    return x, infos[0]


register(
    PipelineVariant(
        "preprocess",
        "reference",
        "preprocess([image]): ultralytics' LetterBox pixels, stacked, transposed, / 255 in float32",
        identical=True,
        make=lambda: _reference_preprocess,
    )
)
register(
    PipelineVariant(
        "preprocess",
        "lean",
        "LeanPreprocessor: resize into a reused canvas, split, / 255 into a reused (1, 3, H, W) buffer",
        identical=True,
        make=LeanPreprocessor,
    )
)
register(
    PipelineVariant(
        "postprocess",
        "ultralytics",
        "ultralytics' non_max_suppression on torchvision's C++ NMS kernel, boxes mapped back",
        identical=True,
        make=lambda: postprocess,
    )
)
register(
    PipelineVariant(
        "postprocess",
        "numpy",
        "numpy_nms: the same NMS and float32 arithmetic in NumPy, torch-free, boxes mapped back",
        identical=True,
        make=lambda: postprocess_numpy,
    )
)
