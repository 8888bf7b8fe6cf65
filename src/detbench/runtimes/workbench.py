"""Which file each backend runs: one we export from the baseline, or one the user ships.

``--detbench-artifact onnxruntime=deploy/model.onnx`` (pytest) and ``--artifact`` (CLI) swap in a
user's artifact; it must fit the baseline (input size, class count, layout) or it is refused
with a message saying which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detbench.errors import BackendError, ModelFileError
from detbench.model.checkpoint import STRIDES, anchor_count
from detbench.runtimes import metadata
from detbench.runtimes.backends import REGISTRY, BackendSettings, BaseBackend, PyTorchBackend, create
from detbench.runtimes.cache import ArtifactCache
from detbench.runtimes.export import Exporter, ExportSettings
from detbench.runtimes.postprocess import MAX_DET


def parse_artifact_overrides(items: Sequence[str]) -> dict[str, Path]:
    """``["onnxruntime=deploy/model.onnx", ...]`` → {backend: path}; errors name the bad item."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise BackendError(f"artifact override {item!r} must look like BACKEND=PATH")
        if name not in REGISTRY:
            raise BackendError(
                f"artifact override {item!r}: unknown backend {name!r}; choose from {', '.join(REGISTRY)}"
            )
        if name == "pytorch":
            raise BackendError("the pytorch backend runs the weights: use --detbench-weights / --weights")
        out[name] = Path(path).expanduser().resolve()
    return out


def train_images(dataset: Any) -> list[Path]:
    """A dataset's training images, the INT8 calibration set (none without a train split)."""
    return dataset.images("train") if "train" in dataset.splits else []


def output_shape(backend: BaseBackend, batch: int, imgsz: int, classes: int) -> tuple[int, int, int]:
    """What ``backend`` returns for ``batch`` images at ``imgsz``: the raw head (N, 4 + classes,
    anchors), or for end2end detections (N, min(300, anchors), 6)."""
    anchors = anchor_count(imgsz)
    if backend.output == "detections":
        return (batch, min(MAX_DET, anchors), 6)
    return (batch, 4 + classes, anchors)


@dataclass
class Workbench:
    """Everything a backend needs, resolved once: weights, export settings, user overrides."""

    weights: Path
    imgsz: int
    names: tuple[str, ...]
    settings: BackendSettings = field(default_factory=BackendSettings)
    overrides: Mapping[str, Path] = field(default_factory=dict)
    # INT8 calibration images, or a callable asked for them only when an INT8 export is built.
    calib_images: Sequence[Path] | Callable[[], Sequence[Path]] = ()
    cache: ArtifactCache | None = None
    export: ExportSettings | None = None  # opset, dynamic batch, simplify, INT8 recipe; imgsz is ours

    def __post_init__(self) -> None:
        settings = dataclasses.replace(self.export or ExportSettings(), imgsz=self.imgsz)
        self.exporter = Exporter(self.weights, settings, cache=self.cache, calib_images=self.calib_images)

    @classmethod
    def from_options(
        cls,
        weights: Path | str | None = None,
        data: Path | str | None = None,
        *,
        imgsz: int | None = None,
        threads: int = BackendSettings.threads,
        artifacts: Sequence[str] | Mapping[str, Path] = (),
        export: ExportSettings | None = None,
    ) -> Workbench:
        """The run's inputs, built the one way every entry point builds them (the CLI, the pytest
        plugin, report, tune, ab, the scripts) from the options they share: ``weights`` (None: the
        committed baseline, sha256-checked), ``data`` (a data.yaml, None: the synthetic set) whose
        train split calibrates INT8 when an INT8 export is first built, ``imgsz`` (None: the size the
        weights were trained at), ``threads`` and ``artifacts`` (``BACKEND=PATH`` overrides, or the
        {backend: path} they parse to)."""
        from detbench.data.datasets import load_dataset
        from detbench.model.baseline import resolve_weights, synthetic_dataset
        from detbench.model.checkpoint import load_detection_model

        path = resolve_weights(weights)
        info = load_detection_model(path)[1]
        overrides = artifacts if isinstance(artifacts, Mapping) else parse_artifact_overrides(artifacts)
        return cls(
            weights=path,
            imgsz=imgsz or info.imgsz,
            names=info.names,
            settings=BackendSettings(threads=threads),
            overrides=dict(overrides),
            calib_images=lambda: train_images(load_dataset(data or synthetic_dataset())),
            export=export,
        )

    def formats(self) -> dict[str, str | None]:
        """Every export format and why these weights have none of it (None: they have it); only
        NMS-free heads (YOLO26, YOLOv10) have ``onnx-end2end``."""
        from detbench.runtimes.export import FORMATS

        by_format = {cls.artifact_format: cls for cls in REGISTRY.values() if cls.artifact_format}
        return {fmt: by_format[fmt].model_unavailable(self.weights) for fmt in FORMATS}

    def artifact(self, name: str) -> Path:
        if name in self.overrides:
            return self.overrides[name]
        fmt = create(name).artifact_format  # a reference's too (backends.REFERENCES: the weights)
        return self.weights if fmt is None else self.exporter.get(fmt).path

    def load(self, name: str, settings: BackendSettings | None = None) -> BaseBackend:
        """Load ``name``'s artifact (``name``: a registered backend or a reference, such as
        ``backends.reference_of(backend)``), checked against the baseline; ``settings`` overrides the
        workbench's own (the tune search loads one artifact at several thread counts)."""
        backend = create(name, settings or self.settings)
        path = self.artifact(name)
        backend.load(path)
        if isinstance(backend, PyTorchBackend):
            backend.set_imgsz(self.imgsz)
        self.check_fits(backend, path)
        return backend

    def check_fits(self, backend: BaseBackend, path: Path) -> None:
        """Refuse an artifact whose input size, class count or output layout differs from the baseline
        (an end2end backend's: (N, min(300, anchors), 6) detections)."""
        spec = backend.spec
        assert spec is not None
        self.check_metadata(path, spec.batch)
        if (spec.height, spec.width) != (self.imgsz, self.imgsz) or spec.channels != 3:
            raise ModelFileError(
                path,
                f"input size {spec.channels}x{spec.height}x{spec.width} does not fit "
                f"the baseline's 3x{self.imgsz}x{self.imgsz}",
            )
        probe = np.zeros((spec.batch or 1, 3, self.imgsz, self.imgsz), dtype=np.float32)
        out = backend.run(probe)
        anchors = anchor_count(self.imgsz)
        if backend.output == "detections":
            rows = min(MAX_DET, anchors)
            if out.shape[1:] != (rows, 6):
                raise ModelFileError(
                    path,
                    f"output shape {out.shape} is not end2end detections (N, {rows}, 6): "
                    "x1, y1, x2, y2, score, class",
                )
            return
        if out.ndim != 3 or out.shape[1] != 4 + len(self.names):
            classes = out.shape[1] - 4 if out.ndim == 3 else "?"
            raise ModelFileError(
                path,
                f"output shape {out.shape} has {classes} classes; the baseline has "
                f"{len(self.names)} (expected (N, {4 + len(self.names)}, {anchors}))",
            )
        if out.shape[2] != anchors:
            raise ModelFileError(
                path,
                f"output layout {out.shape} is not (N, 4+classes, anchors={anchors}); "
                "export without NMS and without transposing the head",
            )

    def check_metadata(self, path: Path, batch: int | None) -> None:
        """Refuse an export whose ultralytics metadata (names, imgsz, stride, batch) contradicts the
        baseline: same-count renamed classes pass every shape check but label every box wrongly."""
        meta = metadata.read_metadata(path)
        problem = metadata.fit_problem(meta, self.names, self.imgsz, max(STRIDES), batch)
        if problem:
            raise ModelFileError(path, problem)
