"""Per-image pipeline stages as registered variants, the way backends are registered.

A variant is one way to run a stage (decode: image file to RGB array; preprocess: image to model
input; postprocess: raw head to detections), described by a :class:`PipelineVariant`. Each stage has
one reference variant, today's code path, and every other variant states whether it claims output
*identical* to the reference's; ``tests/test_pipeline.py`` holds every claiming variant to its claim
(bit for bit) on drawn inputs; the decode variants are ``runtimes.decode.DECODERS`` (held by
``tests/test_decode.py``, the reduced ones bounded by ``verify.decode``). The shipped suite's
``detbench.suite.test_pipelines`` checks every registered variant, one added by a user included, on
Hypothesis-drawn files, images and raw heads.

Call signatures per stage (what ``variant.make()`` returns):

- decode: ``fn(path, imgsz) -> Decoded`` (``runtimes.decode.Decoded``: the RGB array and its factor);
- preprocess: ``fn(image, imgsz, mode="letterbox") -> (x, info)``, ``x`` of shape (1, 3, H, W);
- postprocess: ``fn(raw, infos, names, *, conf, iou, max_det) -> list[Detections]``.

A stage is added by naming it in :data:`STAGES` and :data:`REFERENCES` and registering its
variants with :func:`register`.

:func:`stage_calls` turns one variant name per stage into :class:`StageCalls`, the three stages as
callables around a backend call: the one per-image pipeline everything runs. ``perf.pipeline_timing``
times one stage by stage, ``runtimes.stream`` runs one over many files (sequential or overlapped), and
:class:`Pipeline` (the variant names plus the backend configuration, :class:`BackendConfig`) builds
one for ``Pipeline.load()``'s callable form, ``pipeline(path) -> Detections``. Boxes come back in the
full image's pixels whatever the decode factor. ``detbench.load_pipeline`` builds one from tune.json.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detbench.runtimes.backends import BackendSettings, BaseBackend, PyTorchBackend, create
from detbench.runtimes.decode import DECODERS, Decoded, DecodeVariant, ImageSize, Source
from detbench.runtimes.decode import REFERENCE as DECODE_REFERENCE
from detbench.runtimes.end2end import is_end2end, postprocess_end2end
from detbench.runtimes.postprocess import CONF, IOU, MAX_DET, Detections, postprocess, postprocess_numpy
from detbench.runtimes.preprocess import ImageLike, LeanPreprocessor, LetterboxInfo, Mode, preprocess

STAGES = ("decode", "preprocess", "postprocess")
# stage -> its reference variant
REFERENCES = {"decode": DECODE_REFERENCE, "preprocess": "reference", "postprocess": "ultralytics"}


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


def unregister(stage: str, name: str) -> PipelineVariant:
    """Remove and return a registered variant (e.g. a test's deliberately broken one); a stage's
    reference cannot be removed, since every other variant is compared with it."""
    variant = get(stage, name)
    if variant.is_reference:
        raise ValueError(f"{stage} reference {name!r} cannot be unregistered")
    return REGISTRY.pop((stage, name))


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


def claims_identical(names: Sequence[str]) -> bool:
    """Every stage's variant of ``names`` (one per stage, in :data:`STAGES` order) claims the reference's
    output, so the pipeline gives the reference pipeline's detections; an unregistered name is a
    ``ValueError``."""
    return all(get(stage, name).identical for stage, name in zip(STAGES, names, strict=True))


def identical_alternative(stage: str) -> PipelineVariant:
    """The first registered variant of ``stage`` other than its reference that claims identical output
    (the reference when none does): a drop-in for the reference, there to be faster (the report times it
    beside the reference, ``report.steps.photo_pipeline``)."""
    alternatives = [v for v in variants(stage) if v.identical and not v.is_reference]
    return alternatives[0] if alternatives else reference(stage)


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


def _decode_variant(d: DecodeVariant) -> PipelineVariant:
    """``runtimes.decode``'s decoder as a pipeline variant: same name, description and claim."""
    return PipelineVariant("decode", d.name, d.description, identical=d.identical, make=lambda: d.decode)


for _d in DECODERS.values():  # DECODERS lists the reference first
    register(_decode_variant(_d))


# -- the stages as callables: the one per-image pipeline ------------------------------------------

Run = Callable[[np.ndarray], np.ndarray]  # a loaded backend's call: batch -> raw head
DecodeFn = Callable[[Source, ImageSize], Decoded]


@dataclass(frozen=True)
class StageCalls:
    """A per-image pipeline's host stages as callables around the backend call: ``decode(path) ->
    image``, ``preprocess(image) -> (batch, state)``, then the backend, then ``postprocess(raw, state)
    -> detections`` (boxes in the file's pixels). Built from variant names by :func:`stage_calls`; any
    three callables of those shapes are one too (the timing tests' fakes). Holds the variants' state
    (reused buffers): one per thread."""

    label: str
    decode: Callable[[Source], Any]
    preprocess: Callable[[Any], tuple[np.ndarray, Any]]
    postprocess: Callable[[np.ndarray, Any], Any]
    # The batch lives in a buffer the next ``preprocess`` call overwrites (the lean variant's), so a
    # caller keeping several batches in flight copies it.
    reuses_input: bool = True

    def __call__(self, run: Run, path: Source) -> Any:
        """Detections of ``path`` through ``run``, untimed."""
        x, state = self.preprocess(self.decode(path))
        return self.postprocess(run(x), state)


def stage_calls(
    imgsz: int,
    names: Sequence[str],
    *,
    decode: str | DecodeFn = DECODE_REFERENCE,
    preprocess: str = REFERENCES["preprocess"],
    postprocess: str = REFERENCES["postprocess"],
    conf: float = CONF,
    iou: float = IOU,
    max_det: int = MAX_DET,
    end2end: bool = False,
) -> StageCalls:
    """The registered variants named (by default each stage's reference) as :class:`StageCalls` for a
    model of input ``imgsz`` and classes ``names``. ``decode`` may also be a callable ``(path, imgsz) ->
    Decoded``. ``end2end``: the backend's output is already detections (the end2end export), so
    postprocess maps them back without NMS, whatever ``postprocess`` names."""
    if callable(decode):
        dec, dec_name = decode, getattr(decode, "__name__", "decode")
    else:
        dec, dec_name = get("decode", decode).make(), decode
    pre_variant = get("preprocess", preprocess)
    pre_fn = pre_variant.make()
    post_fn = get("postprocess", postprocess).make()
    labels = tuple(names)
    nms: dict[str, Any] = {"conf": conf, "iou": iou, "max_det": max_det}

    def pre(decoded: Decoded) -> tuple[np.ndarray, tuple[Decoded, LetterboxInfo]]:
        x, info = pre_fn(decoded.rgb, imgsz)
        return x, (decoded, info)

    def post(raw: np.ndarray, state: tuple[Decoded, LetterboxInfo]) -> Detections:
        decoded, info = state
        if end2end:
            (det,) = postprocess_end2end(raw, [info], labels, conf=conf, max_det=max_det)
        else:
            (det,) = post_fn(raw, [info], labels, **nms)
        if decoded.factor == 1:
            return det
        # Boxes were mapped back to the reduced image: scale them to the displayed full-size image.
        full = decoded.boxes_to_full(det.xyxy).astype(np.float32)
        return Detections(full, det.scores, det.class_ids, det.names)

    return StageCalls(
        f"{dec_name}/{preprocess}/{postprocess}",
        lambda path: dec(path, imgsz),
        pre,
        post,
        reuses_input=not pre_variant.is_reference,
    )


# -- a whole pipeline: the variants plus the backend configuration ---------------------------------


@dataclass(frozen=True)
class BackendConfig:
    """The model half of a pipeline: which registered backend runs which artifact, at which threads."""

    backend: str
    threads: int
    artifact: Path  # the export (the weights for the eager backends)
    imgsz: int
    names: tuple[str, ...]

    def load(self) -> BaseBackend:
        backend = create(self.backend, BackendSettings(threads=self.threads))
        backend.load(Path(self.artifact))
        if isinstance(backend, PyTorchBackend):  # eager models take any size: pin the searched one
            backend.set_imgsz(self.imgsz)
        return backend


@dataclass(frozen=True)
class Pipeline:
    """One variant per stage plus the backend configuration; the defaults are the reference stages."""

    config: BackendConfig
    decode: str = DECODE_REFERENCE
    preprocess: str = REFERENCES["preprocess"]
    postprocess: str = REFERENCES["postprocess"]

    def __post_init__(self) -> None:
        for stage in STAGES:
            get(stage, getattr(self, stage))  # an unknown name fails here, not at the first image

    @property
    def stages(self) -> tuple[str, str, str]:
        return (self.decode, self.preprocess, self.postprocess)

    @property
    def identical(self) -> bool:
        """Every stage claims the reference's output, so the pipeline gives the reference's detections."""
        return claims_identical(self.stages)

    @property
    def label(self) -> str:
        return "/".join(self.stages)

    def reference(self) -> Pipeline:
        """The same backend configuration with every stage's reference variant."""
        return Pipeline(self.config)

    def calls(
        self, *, conf: float = CONF, iou: float = IOU, max_det: int = MAX_DET, end2end: bool = False
    ) -> StageCalls:
        """This pipeline's stages as callables for its configuration's model (one per thread)."""
        c = self.config
        return stage_calls(
            c.imgsz,
            c.names,
            decode=self.decode,
            preprocess=self.preprocess,
            postprocess=self.postprocess,
            conf=conf,
            iou=iou,
            max_det=max_det,
            end2end=end2end,
        )

    def load(
        self,
        backend: BaseBackend | None = None,
        *,
        conf: float = CONF,
        iou: float = IOU,
        max_det: int = MAX_DET,
    ) -> LoadedPipeline:
        """The callable form; ``backend`` reuses one already loaded from ``config`` (the search's)."""
        return LoadedPipeline(self, backend or self.config.load(), conf=conf, iou=iou, max_det=max_det)


class LoadedPipeline:
    """``pipeline(path) -> Detections``: :meth:`Pipeline.calls` around the loaded backend, boxes mapped
    back to the full image's pixels. Holds each stage's state (reused buffers), so one per thread."""

    def __init__(
        self,
        spec: Pipeline,
        backend: BaseBackend,
        *,
        conf: float = CONF,
        iou: float = IOU,
        max_det: int = MAX_DET,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.conf, self.iou, self.max_det = conf, iou, max_det
        # An end2end backend's output is already detections: its postprocess has no NMS to run.
        self.calls = spec.calls(conf=conf, iou=iou, max_det=max_det, end2end=is_end2end(backend))

    @property
    def names(self) -> tuple[str, ...]:
        return self.spec.config.names

    def __call__(self, path: Source) -> Detections:
        return self.calls(self.backend.run, path)

    def many(self, paths: Sequence[Source]) -> list[Detections]:
        return [self(p) for p in paths]

    def __repr__(self) -> str:
        c = self.spec.config
        return f"LoadedPipeline({self.spec.label} on {c.backend} {c.threads}t, {c.artifact})"
