"""Export the baseline to every deployable format, cached under a key that covers its inputs.

Primary ONNX path: ``torch.onnx.export`` (TorchScript-based exporter, ``dynamo=False``) on the same
module the ``pytorch`` backend runs, then onnxslim. ultralytics' own exporter is the cross-check
(``export_onnx_ultralytics``, used by a test). OpenVINO IR is converted from the fp32 ONNX model;
INT8 is ONNX Runtime static QDQ quantization of it (recipe in ``Int8Recipe``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import platform
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from detbench import __version__
from detbench._compat import quiet_torch_exporters
from detbench.model.checkpoint import load_detection_model
from detbench.runtimes.cache import Artifact, ArtifactCache, sha256_file

EXPORTER_VERSION = 2  # part of every cache key: bump when a builder's output changes
FORMATS = ("torchscript", "onnx", "openvino", "onnx-int8")
FILENAMES = {
    "torchscript": "model.torchscript",
    "onnx": "model.onnx",
    "openvino": "openvino_model",
    "onnx-int8": "model.int8.onnx",
}


@dataclass(frozen=True)
class Int8Recipe:
    """ONNX Runtime static quantization settings (QDQ). See README "INT8 recipe" for what each gave."""

    calibration_images: int = 128
    method: str = "Percentile"  # MinMax | Entropy | Percentile
    per_channel: bool = True
    reduce_range: bool = True  # AVX2 without VNNI: u8s8 dot products can saturate at full range
    # Node-name fragments kept in fp32. The Detect head decodes boxes (DFL softmax, anchor
    # arithmetic) and applies the class sigmoid: quantizing those scrambles every score.
    keep_fp32: tuple[str, ...] = ("/model.22/",)
    # Fragments whose non-Conv nodes only stay fp32 (the convs inside are quantized).
    keep_fp32_non_conv: tuple[str, ...] = ()
    calib_seed: int = 0

    def excluded(self, nodes: Sequence[object]) -> list[str]:
        """Names of the ONNX nodes this recipe leaves in fp32."""
        out = []
        for n in nodes:
            name, op = getattr(n, "name", ""), getattr(n, "op_type", "")
            if any(f in name for f in self.keep_fp32) or (
                op != "Conv" and any(f in name for f in self.keep_fp32_non_conv)
            ):
                out.append(name)
        return out


@dataclass(frozen=True)
class ExportSettings:
    imgsz: int = 128
    opset: int = 17
    dynamic_batch: bool = True
    simplify: bool = True
    int8: Int8Recipe = field(default_factory=Int8Recipe)


def package_version(pkg: str) -> str:
    """Installed version of ``pkg``, or "absent"."""
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def toolchain_versions() -> dict[str, str]:
    """Versions that can change an exported artifact; part of every cache key."""
    return {
        "python": platform.python_version(),
        "detbench": __version__,
        **{
            p: package_version(p)
            for p in ("torch", "ultralytics", "onnx", "onnxruntime", "onnxslim", "openvino")
        },
    }


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _dummy(settings: ExportSettings) -> torch.Tensor:
    return torch.zeros(1, 3, settings.imgsz, settings.imgsz)


def _prepared(weights: Path, settings: ExportSettings) -> tuple[torch.nn.Module, object]:
    """The raw-head module after one dry run: Detect caches its anchors for the input size on the
    first call, so tracing twice (the trace check) then sees the same graph, as ultralytics does."""
    model, info = load_detection_model(weights)
    with torch.no_grad():
        model(_dummy(settings))
    return model, info


def build_torchscript(weights: Path, dest: Path, settings: ExportSettings) -> None:
    model, _ = _prepared(weights, settings)
    with torch.no_grad(), quiet_torch_exporters():
        traced = torch.jit.trace(model, _dummy(settings), strict=False)
        meta = {"imgsz": [settings.imgsz, settings.imgsz], "producer": f"detbench {__version__}"}
        traced.save(str(dest), _extra_files={"config.txt": json.dumps(meta)})


def build_onnx(weights: Path, dest: Path, settings: ExportSettings) -> None:
    import onnx

    model, info = _prepared(weights, settings)
    dynamic = {"images": {0: "batch"}, "output0": {0: "batch"}} if settings.dynamic_batch else None
    with torch.no_grad(), quiet_torch_exporters():
        torch.onnx.export(
            model,
            _dummy(settings),
            str(dest),
            opset_version=settings.opset,
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes=dynamic,
            dynamo=False,
        )
    proto = onnx.load(str(dest))
    if settings.simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    meta = {
        "names": repr(dict(enumerate(info.names))),
        "imgsz": str([settings.imgsz] * 2),
        "stride": str(info.stride),
        "producer": f"detbench {__version__}",
    }
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dest))


def build_openvino(onnx_path: Path, dest: Path, settings: ExportSettings) -> None:
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if settings.dynamic_batch:
        model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, settings.imgsz, settings.imgsz])})
    dest.mkdir()
    # fp32 weights on purpose: fp16 compression is a different model, not an export of this one.
    ov.save_model(model, str(dest / "model.xml"), compress_to_fp16=False)


class _Calibration:
    """ONNX Runtime CalibrationDataReader over preprocessed training images, one at a time."""

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._it: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {"images": batch}


def calibration_batches(images: Sequence[Path], recipe: Int8Recipe, imgsz: int) -> list[np.ndarray]:
    from detbench.runtimes.preprocess import preprocess

    rng = np.random.default_rng(recipe.calib_seed)
    chosen = rng.choice(len(images), size=min(recipe.calibration_images, len(images)), replace=False)
    return [preprocess([images[i]], imgsz)[0] for i in sorted(chosen)]


def build_onnx_int8(
    onnx_path: Path, dest: Path, settings: ExportSettings, calib_images: Sequence[Path]
) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    recipe = settings.int8
    pre = dest.with_name("pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    exclude = recipe.excluded(onnx.load(str(pre)).graph.node)
    # The calibrators print progress to stdout, which would interleave with our progress bars.
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(pre),
            str(dest),
            calibration_data_reader=_Calibration(calibration_batches(calib_images, recipe, settings.imgsz)),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            calibrate_method=getattr(CalibrationMethod, recipe.method),
            nodes_to_exclude=exclude,
            extra_options={"CalibMovingAverage": True} if recipe.method == "MinMax" else {},
        )
    pre.unlink()


class Exporter:
    """Builds (or reuses) every artifact of one baseline checkpoint."""

    def __init__(
        self,
        weights: Path | str,
        settings: ExportSettings | None = None,
        cache: ArtifactCache | None = None,
        calib_images: Sequence[Path] = (),
    ) -> None:
        self.weights = Path(weights).resolve()
        self.settings = settings or ExportSettings()
        self.cache = cache or ArtifactCache()
        self.calib_images = list(calib_images)
        self.weights_sha256 = sha256_file(self.weights)

    def fields(self, fmt: str) -> dict:
        s = asdict(self.settings)
        if fmt != "onnx-int8":
            s.pop("int8")  # the INT8 recipe must not invalidate the fp32 artifacts
        return {
            "exporter": EXPORTER_VERSION,
            "format": fmt,
            "weights_sha256": self.weights_sha256,
            "settings": s,
            "versions": toolchain_versions(),
        }

    def get(self, fmt: str) -> Artifact:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
        if fmt == "openvino" and not openvino_available():
            raise ModuleNotFoundError("openvino is not installed (pip install openvino)")
        if fmt == "onnx-int8" and not self.calib_images:
            raise ValueError("INT8 export needs calibration images (the training split)")
        builders = {
            "torchscript": lambda d: build_torchscript(self.weights, d, self.settings),
            "onnx": lambda d: build_onnx(self.weights, d, self.settings),
            "openvino": lambda d: build_openvino(self.get("onnx").path, d, self.settings),
            "onnx-int8": lambda d: build_onnx_int8(
                self.get("onnx").path, d, self.settings, self.calib_images
            ),
        }
        return self.cache.get_or_build(fmt, self.fields(fmt), FILENAMES[fmt], builders[fmt])


def export_onnx_ultralytics(weights: Path, out_dir: Path, imgsz: int, opset: int = 17) -> Path:
    """ultralytics' own ONNX exporter, for the cross-check test (never the primary artifact)."""
    from ultralytics import YOLO

    out_dir.mkdir(parents=True, exist_ok=True)
    local = out_dir / weights.name
    shutil.copy2(weights, local)  # ultralytics writes the export next to the weights
    with quiet_torch_exporters():
        path = YOLO(str(local)).export(
            format="onnx", imgsz=imgsz, opset=opset, simplify=True, dynamic=False, device="cpu", verbose=False
        )
    return Path(path)
