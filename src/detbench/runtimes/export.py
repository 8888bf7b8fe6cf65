"""Export the baseline to every deployable format, cached under a key that covers its inputs.

Primary ONNX path: ``torch.onnx.export`` (TorchScript-based exporter, ``dynamo=False``) on the same
module the ``pytorch`` backend runs, then onnxslim. ultralytics' own exporter is the cross-check
(``export_onnx_ultralytics``, used by a test). OpenVINO IR is converted from the fp32 ONNX model;
INT8 is ONNX Runtime static QDQ quantization of it (recipe in ``Int8Recipe``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import logging
import platform
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from detbench import CLASS_NAMES, __version__
from detbench._compat import quiet_torch_exporters
from detbench._fs import sha256_file
from detbench.errors import ModelFileError
from detbench.model import scales
from detbench.model.checkpoint import load_detection_model
from detbench.model.head import DetectHead
from detbench.runtimes import metadata
from detbench.runtimes.cache import Artifact, ArtifactCache

EXPORTER_VERSION = 5  # part of every cache key: bump when a builder's output changes (5: YOLO() interop)
FORMATS = (
    "torchscript",
    "onnx",
    "openvino",
    "onnx-int8",
    "openvino-int8",
    "torchscript-frozen",
    "onnx-end2end",
)
FILENAMES = {
    "torchscript": "model.torchscript",
    "onnx": "model.onnx",
    "openvino": "model_openvino_model",  # ultralytics recognises an IR folder by this suffix
    "onnx-int8": "model.int8.onnx",
    "openvino-int8": "model_int8_openvino_model",  # the suffix ultralytics looks for
    "torchscript-frozen": "model.frozen.torchscript",
    "onnx-end2end": "model.end2end.onnx",
}
# Packages only one format is built with: in that format's cache key, not in every key.
FORMAT_TOOLS = {"openvino-int8": ("nncf",)}
# Where the CPU has int8 dot products (VNNI, AMX), u8s8 products cannot saturate: full range.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# Placeholders in the INT8 recipes for the model's own Detect head (model.head.DetectHead), filled
# in by ``for_head`` from the weights being exported: the head's layer index differs by family.
HEAD = "{head}"  # its node-name prefix, e.g. /model.22/ (YOLOv8), /model.23/ (YOLO11)
HEAD_DFL = "{head_dfl}"  # its DFL's prefix; a pattern naming it is dropped for a head without DFL
# Its class branch's prefix where that branch holds depthwise convs (YOLO11/12/26/v10); a pattern
# naming it is dropped for any other head (YOLOv8's), whose recipe, cache key and artifact it leaves alone.
HEAD_CLS_DW = "{head_cls_dw}"


@dataclass(frozen=True)
class Int8Recipe:
    """ONNX Runtime static quantization settings (QDQ). See README "INT8 recipe" for what each gave."""

    calibration_images: int = 128
    method: str = "Percentile"  # MinMax | Entropy | Percentile
    per_channel: bool = True
    # 7-bit weights: ORT's advice for CPUs without VNNI, whose u8s8 dot products (vpmaddubsw) can
    # saturate at full range. None: decided from this CPU's flags when the Exporter is made
    # (``resolved``), so the cache key and the entry's meta record what was chosen.
    reduce_range: bool | None = None
    # Images whose activations the calibrator holds at once (ORT's CalibStridedMinMax, which feeds
    # any calibrator in strides and merges its histograms): bounds memory at any input size.
    calib_stride: int = 16
    # Node-name fragments kept in fp32 (HEAD: the model's Detect head). The head decodes boxes (DFL
    # softmax, anchor arithmetic) and applies the class sigmoid: quantizing those scrambles every score.
    keep_fp32: tuple[str, ...] = (HEAD,)
    # Fragments whose non-Conv nodes only stay fp32 (the convs inside are quantized).
    keep_fp32_non_conv: tuple[str, ...] = ()
    # Keep every SiLU (its Sigmoid and Mul, ``.../act/...``) in float between quantized convs.
    float_silu: bool = False
    calib_seed: int = 0

    def resolved(self) -> Int8Recipe:
        """This recipe with ``reduce_range`` decided for this CPU when it was left to the CPU."""
        if self.reduce_range is not None:
            return self
        from detbench.cpuinfo import has_any_flag

        return replace(self, reduce_range=not has_any_flag(*INT8_DOT_FLAGS))

    def for_head(self, head: DetectHead, stem: Sequence[str] = ()) -> Int8Recipe:
        """This recipe with HEAD replaced by ``head``'s node-name prefix, and the ``stem`` layers'
        prefixes (Exporter.float_stem) kept in fp32 too."""

        def fill(fragments: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(f.replace(HEAD, head.prefix) for f in fragments)

        keep = fill(self.keep_fp32) + tuple(stem)
        return replace(self, keep_fp32=keep, keep_fp32_non_conv=fill(self.keep_fp32_non_conv))

    def excluded(self, nodes: Sequence[object]) -> list[str]:
        """Names of the ONNX nodes this recipe leaves in fp32."""
        out = []
        for n in nodes:
            name, op = getattr(n, "name", ""), getattr(n, "op_type", "")
            if (
                any(f in name for f in self.keep_fp32)
                or (op != "Conv" and any(f in name for f in self.keep_fp32_non_conv))
                or (self.float_silu and op in ("Sigmoid", "Mul") and "/act/" in name)
            ):
                out.append(name)
        return out


@dataclass(frozen=True)
class NncfRecipe:
    """NNCF post-training quantization of the fp32 OpenVINO IR (the ``openvino-int8`` format).

    Preset MIXED (symmetric weights, asymmetric activations) and the Detect head's arithmetic kept
    in float: with NNCF's defaults mAP50-95 fell 0.037 (issue 11), with this recipe 0.0024. A class
    branch of depthwise + pointwise convs (YOLO11/12/26/v10) is kept in float whole: quantized, it
    moved a 5-epoch YOLO26n's matched detection score 0.256 (> det_score 0.25), in float 0.113
    (README "Model families", scripts/measure_family_int8.py). A layer holding self-attention
    (model.attention: YOLO11's C2PSA, YOLO12's A2C2f, YOLO26's C2PSA and attention C3k2) is kept in
    float activations, its weights stored int8 (weight-only compression, so the artifact stays
    INT8-sized); such a model's stem (model.stem) is kept in float too, and its activation ranges are
    each tensor's min and max (MINMAX). A model without attention (YOLOv8n) gets none of these, so
    its recipe, cache key and artifact are unchanged.
    """

    calibration_images: int = 128  # NNCF's subset_size: statistics are reduced per image, so
    # memory stays bounded at any input size (unlike keeping every activation)
    preset: str = "MIXED"  # nncf.QuantizationPreset member
    # The Detect head (HEAD, e.g. /model.22/ in the ONNX names the IR keeps, /model/model.22/Sub): its
    # DFL, anchor Sub/Add/Mul/Div, the class Sigmoid and the Concats that join boxes and scores.
    ignored_patterns: tuple[str, ...] = (
        rf".*{HEAD_DFL}.*",
        rf".*{HEAD}(Sub|Add|Mul|Div|Concat|Sigmoid)[^/]*",  # not the convs' Swish (.../act/Mul)
        rf".*{HEAD_CLS_DW}.*",
    )
    ignored_types: tuple[str, ...] = ("Sigmoid",)
    calib_seed: int = 0
    # Activation ranges of a model with attention layers (nncf RangeEstimatorParametersSet member): each
    # tensor's min and max, not NNCF's default, which clipped YOLO26n's val score 0.68 -> 0.43 (0.26 >
    # det_score 0.25; MINMAX 0.09). None (NNCF's default): set by for_head for a model without attention.
    attention_ranges: str | None = "MINMAX"
    # The attention layers' node patterns (``.*/model\.10/.*``), filled by for_head: kept out of
    # activation quantization, since quantized, YOLO11n's C2PSA moved a drawn scene's class score 0.58
    # (atol 0.4), in float 0.17.
    attention: tuple[str, ...] = ()
    # Their weights' weight-only compression (nncf CompressWeightsMode member): in fp32 they made
    # YOLO11n's artifact 0.384 x openvino's, over the 0.35 size budget. None: no attention layer.
    attention_weights: str | None = "INT8_SYM"

    def for_head(
        self, head: DetectHead, attention: Sequence[str] = (), stem: Sequence[str] = ()
    ) -> NncfRecipe:
        """This recipe with HEAD / HEAD_DFL / HEAD_CLS_DW replaced by ``head``'s (escaped) prefixes,
        and ``attention`` holding one pattern for each of the ``attention`` layers' prefixes
        (model.attention.attention_prefixes), and the ``stem`` layers (Exporter.float_stem) kept in
        float; a pattern of the DFL or of a depthwise class branch is dropped where the head has none,
        or NNCF would refuse it as matching nothing."""
        patterns = []
        for p in self.ignored_patterns:
            for placeholder, prefix in (
                (HEAD_DFL, head.dfl_prefix),
                (HEAD_CLS_DW, head.depthwise_cls_prefix),
            ):
                if placeholder in p:
                    if prefix is None:
                        break
                    p = p.replace(placeholder, re.escape(prefix))
            else:
                patterns.append(p.replace(HEAD, re.escape(head.prefix)))
        patterns += [rf".*{re.escape(p)}.*" for p in stem]
        return replace(
            self,
            ignored_patterns=tuple(patterns),
            attention=tuple(rf".*{re.escape(a)}.*" for a in attention),
            attention_ranges=self.attention_ranges if attention else None,
            attention_weights=self.attention_weights if attention else None,
        )


@dataclass(frozen=True)
class ExportSettings:
    imgsz: int = 128
    opset: int = 17
    dynamic_batch: bool = True
    simplify: bool = True
    int8: Int8Recipe = field(default_factory=Int8Recipe)
    nncf: NncfRecipe = field(default_factory=NncfRecipe)

    # Settings that belong to one format only: they must not invalidate the others' cache entries.
    OWN: ClassVar[dict[str, str]] = {
        "int8": "onnx-int8",
        "nncf": "openvino-int8",
    }


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


def _prepared(
    weights: Path, settings: ExportSettings, *, end2end: bool = False
) -> tuple[torch.nn.Module, object]:
    """The raw-head module (``end2end``: the one-to-one head's detections) after one dry run: Detect
    caches its anchors for the input size on the first call, so tracing twice (the trace check) then
    sees the same graph, as ultralytics does."""
    model, info = load_detection_model(weights, end2end=end2end)
    with torch.no_grad():
        model(_dummy(settings))
    return model, info


def _metadata(info: object, settings: ExportSettings, **args: object) -> dict:
    """What ultralytics' exporter would record for this export (see runtimes.metadata)."""
    return metadata.ultralytics_metadata(info.names, settings.imgsz, info.stride, args)


def build_torchscript(weights: Path, dest: Path, settings: ExportSettings) -> None:
    model, info = _prepared(weights, settings)
    with torch.no_grad(), quiet_torch_exporters():
        traced = torch.jit.trace(model, _dummy(settings), strict=False)
        traced.save(str(dest), _extra_files=metadata.torchscript_extra_files(_metadata(info, settings)))


def build_torchscript_frozen(weights: Path, dest: Path, settings: ExportSettings) -> None:
    """The traced module frozen: weights and attributes inlined as constants, then folded.

    Not followed by ``torch.jit.optimize_for_inference``: here it made the frozen model 1.22x
    slower (7.74 vs 6.32 ms, 1 thread; its MKLDNN layout conversions cost more than they save at
    this size) and its output did not load back (``required keyword attribute 'value' is undefined``).
    """
    model, info = _prepared(weights, settings)
    with torch.no_grad(), quiet_torch_exporters():
        traced = torch.jit.trace(model, _dummy(settings), strict=False).eval()
        frozen = torch.jit.freeze(traced)
        frozen.save(str(dest), _extra_files=metadata.torchscript_extra_files(_metadata(info, settings)))


def build_onnx(weights: Path, dest: Path, settings: ExportSettings, *, end2end: bool = False) -> None:
    """``end2end``: the one-to-one head selected, output (N, min(300, anchors), 6) x1 y1 x2 y2 score
    class, with ultralytics' metadata saying so (``end2end: True``), as its ``export(nms=False)`` does."""
    import onnx

    model, info = _prepared(weights, settings, end2end=end2end)
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
    unname_batch_dim(proto)
    meta = _metadata(info, settings, opset=settings.opset, simplify=settings.simplify)
    if end2end:
        meta["end2end"] = True
    metadata.add_onnx_metadata(proto, meta)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dest))


def unname_batch_dim(proto: object) -> None:
    """Make the dynamic batch dim anonymous (no ``dim_param``) in the graph's inputs, outputs and value_info.

    ultralytics' AutoBackend reads a *named* output batch dim as "dynamic image size" and then
    letterboxes each image to its own aspect (128x96), which our fixed 128x128 graph refuses. An
    anonymous dim is just as dynamic for every runtime; only that misreading goes away. Height and
    width are static, so every symbolic dim is the batch or derived from it (shape inference in the
    quantizer renames them ``unk__N``, ``floor(1.0*batch)``).
    """
    g = proto.graph
    for vi in (*g.input, *g.output, *g.value_info):
        for dim in vi.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.ClearField("dim_param")


def build_openvino(onnx_path: Path, dest: Path, settings: ExportSettings) -> None:
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    if settings.dynamic_batch:
        model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, settings.imgsz, settings.imgsz])})
    dest.mkdir()
    # fp32 weights on purpose: fp16 compression is a different model, not an export of this one.
    ov.save_model(model, str(dest / "model.xml"), compress_to_fp16=False)
    meta = metadata.read_metadata(onnx_path)  # the ONNX it was converted from carries it
    meta["args"] = {k: v for k, v in meta.get("args", {}).items() if k not in ("opset", "simplify")}
    metadata.write_openvino_metadata(dest, meta)


class _Calibration:
    """ONNX Runtime CalibrationDataReader over preprocessed training images, one at a time; with
    ``set_range`` (what ORT's strided calibration calls) it yields one stride of them."""

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._batches = list(batches)
        self._it: Iterator[np.ndarray] = iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {"images": batch}


def calib_stride(n: int, limit: int) -> int:
    """The largest stride <= limit that divides n (ORT refuses a ragged last stride)."""
    return next(s for s in range(max(1, min(limit, n)), 0, -1) if n % s == 0)


def calibration_batches(
    images: Sequence[Path], recipe: Int8Recipe | NncfRecipe, imgsz: int
) -> list[np.ndarray]:
    from detbench.runtimes.preprocess import preprocess

    rng = np.random.default_rng(recipe.calib_seed)
    chosen = rng.choice(len(images), size=min(recipe.calibration_images, len(images)), replace=False)
    return [preprocess([images[i]], imgsz)[0] for i in sorted(chosen)]


def _quantize_static(
    pre: Path, dest: Path, batches: Sequence[np.ndarray], recipe: Int8Recipe, method: str, exclude: list[str]
) -> None:
    """ONNX Runtime's static QDQ quantization of ``pre`` with calibration ``method``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    extra: dict[str, object] = {"CalibStridedMinMax": calib_stride(len(batches), recipe.calib_stride)}
    if method == "MinMax":
        extra["CalibMovingAverage"] = True
    # The calibrators print progress to stdout, which would interleave with our progress bars.
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(pre),
            str(dest),
            calibration_data_reader=_Calibration(batches),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            calibrate_method=getattr(CalibrationMethod, method),
            nodes_to_exclude=exclude,
            extra_options=extra,
        )


def _check_fragments(path: Path, fragments: Sequence[str], names: Sequence[str]) -> None:
    """Each fragment the ORT recipe keeps in float names some node: one that matches none would
    silently quantize what it was meant to protect (the Detect head: mAP50 0.0)."""
    for f in fragments:
        if HEAD in f:
            raise ValueError(
                "Int8Recipe.keep_fp32 names the Detect head: fill it in first (Int8Recipe.for_head)"
            )
        if not any(f in name for name in names):
            raise ModelFileError(
                path, f"no node of the exported graph is named like {f!r}, which INT8 keeps in float"
            )


def _check_patterns(path: Path, patterns: Sequence[str], names: Sequence[str]) -> None:
    """Each NNCF ignored pattern matches some node (as NNCF matches them: ``re.match``); said in our
    one line before NNCF would raise its multi-line ValidationError."""
    for p in patterns:
        if HEAD in p or HEAD_DFL in p:
            raise ValueError(
                "NncfRecipe.ignored_patterns names the Detect head: fill it in first (NncfRecipe.for_head)"
            )
        if not any(re.match(p, name) for name in names):
            raise ModelFileError(
                path, f"no node of the exported graph matches {p!r}, which INT8 keeps in float"
            )


def build_onnx_int8(
    onnx_path: Path, dest: Path, settings: ExportSettings, calib_images: Sequence[Path]
) -> None:
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    recipe = settings.int8
    if recipe.reduce_range is None:
        raise ValueError("Int8Recipe.reduce_range must be resolved for this CPU first (Int8Recipe.resolved)")
    batches = calibration_batches(calib_images, recipe, settings.imgsz)
    pre = dest.with_name("pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    nodes = onnx.load(str(pre)).graph.node
    _check_fragments(onnx_path, (*recipe.keep_fp32, *recipe.keep_fp32_non_conv), [n.name for n in nodes])
    exclude = recipe.excluded(nodes)
    try:
        _quantize_static(pre, dest, batches, recipe, recipe.method, exclude)
        calibration = recipe.method
    except ValueError as exc:
        # ORT's histogram calibrators (Percentile, Entropy) spread 2048 bins over each tensor's
        # range; a tensor whose range is denormal-small (dead channels, e.g. in an untrained model)
        # cannot hold them and numpy refuses. MinMax needs no bins; the suite verifies the result.
        if "finite-sized bins" not in str(exc) or recipe.method == "MinMax":
            raise
        _quantize_static(pre, dest, batches, recipe, "MinMax", exclude)
        calibration = f"MinMax ({recipe.method} failed: {exc})"
    pre.unlink()
    # quantize_static keeps no metadata_props: copy the fp32 model's, noting the precision.
    meta = metadata.read_metadata(onnx_path)
    meta["args"] = {**meta.get("args", {}), "quantize": 8, "calibration": calibration}
    proto = onnx.load(str(dest))
    unname_batch_dim(proto)
    metadata.add_onnx_metadata(proto, meta)
    onnx.save(proto, str(dest))


def _range_estimator(name: str | None) -> dict[str, object]:
    """nncf.quantize's keyword for activation ranges by the named estimator; none for NNCF's default."""
    if name is None:
        return {}
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    params = getattr(RangeEstimatorParametersSet, name)
    return {"advanced_parameters": AdvancedQuantizationParameters(activations_range_estimator_params=params)}


def _compress_only(model: object, patterns: Sequence[str], mode: str) -> object:
    """``model`` with the weights of the nodes ``patterns`` match (and of no other) stored in ``mode``,
    weight-only: their activations stay float."""
    import nncf

    # NNCF's ignored scope says what to leave, and it also skips a weight whose own Constant it names:
    # so list the other layers by name, not by a negated pattern (that would name the weights too).
    # OpenVINO 2026.4's CPU plugin cannot compile a weight-compressed 1x1 conv that reads one output of
    # a multi-output node (ConvertWeightCompressedConv1x1ToMatmul: "Default output not supported", on
    # the qkv conv after C2PSA's Split): such a conv keeps float weights.
    others = [
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")
        and (
            not any(re.match(p, op.get_friendly_name()) for p in patterns)
            or op.input_value(0).get_node().get_output_size() > 1
        )
    ]
    return nncf.compress_weights(
        model,
        mode=getattr(nncf.CompressWeightsMode, mode),
        ignored_scope=nncf.IgnoredScope(names=others, validate=False),
    )


def build_openvino_int8(
    ir_dir: Path, dest: Path, settings: ExportSettings, calib_images: Sequence[Path]
) -> None:
    """NNCF post-training quantization of the fp32 IR with ``settings.nncf`` (see NncfRecipe)."""
    import nncf
    import openvino as ov

    recipe = settings.nncf
    model = ov.Core().read_model(str(ir_dir / "model.xml"))
    floated = (*recipe.ignored_patterns, *recipe.attention)
    _check_patterns(ir_dir, floated, [op.get_friendly_name() for op in model.get_ops()])
    batches = calibration_batches(calib_images, recipe, settings.imgsz)
    scope = nncf.IgnoredScope(patterns=list(floated), types=list(recipe.ignored_types))
    # NNCF draws progress bars on stdout and logs every ignored node at INFO: keep only warnings.
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(
                model,
                nncf.Dataset(batches),
                preset=getattr(nncf.QuantizationPreset, recipe.preset),
                subset_size=len(batches),
                ignored_scope=scope,
                **_range_estimator(recipe.attention_ranges),
            )
            if recipe.attention and recipe.attention_weights:
                quantized = _compress_only(quantized, recipe.attention, recipe.attention_weights)
    finally:
        nncf_log.setLevel(level)
    dest.mkdir()
    ov.save_model(quantized, str(dest / "model.xml"), compress_to_fp16=False)
    metadata.write_openvino_metadata(dest, metadata.read_metadata(ir_dir))  # the fp32 IR's sidecar


class Exporter:
    """Builds (or reuses) every artifact of one baseline checkpoint."""

    def __init__(
        self,
        weights: Path | str,
        settings: ExportSettings | None = None,
        cache: ArtifactCache | None = None,
        calib_images: Sequence[Path] | Callable[[], Sequence[Path]] = (),
    ) -> None:
        self.weights = Path(weights).resolve()
        settings = settings or ExportSettings()
        # reduce_range decided for this CPU here, so the cache key and entry meta record the choice.
        self.settings = replace(settings, int8=settings.int8.resolved())
        self.cache = cache or ArtifactCache()
        self._calib = calib_images
        self.weights_sha256 = sha256_file(self.weights)

    @functools.cached_property
    def calib_images(self) -> list[Path]:
        """The INT8 calibration images; a callable is asked only when an INT8 build runs (listing a
        dataset, or generating the synthetic one, is work a cached or fp32 artifact does not need)."""
        return list(self._calib() if callable(self._calib) else self._calib)

    def _calibration(self) -> list[Path]:
        if not self.calib_images:
            raise ValueError("INT8 export needs calibration images (the training split)")
        return self.calib_images

    @functools.cached_property
    def _structure(self) -> tuple[DetectHead, tuple[str, ...], tuple[str, ...]]:
        """The weights' Detect head, attention layers' and stem layers' prefixes, found by structure
        (loads the checkpoint: only INT8 asks)."""
        from detbench.model.attention import attention_prefixes
        from detbench.model.stem import stem_prefixes

        module, info = load_detection_model(self.weights)
        return info.head, attention_prefixes(module.model), stem_prefixes(module.model)

    @property
    def head(self) -> DetectHead:
        """The weights' Detect head, found by structure."""
        return self._structure[0]

    @property
    def attention(self) -> tuple[str, ...]:
        """Node-name prefixes of the weights' attention layers (``/model.10/``), found by structure."""
        return self._structure[1]

    @property
    def stem(self) -> tuple[str, ...]:
        """Node-name prefixes of the weights' stem layers (output stride <= 4), found by structure."""
        return self._structure[2]

    @property
    def float_stem(self) -> tuple[str, ...]:
        """The stem prefixes both INT8 recipes keep in float: the stem of a model with attention layers
        (the families after YOLOv8, where it was measured), none for YOLOv8n, whose recipes and cache
        keys stay as they were."""
        return self.stem if self.attention else ()

    def settings_for(self, fmt: str) -> ExportSettings:
        """The settings ``fmt`` is built with: the INT8 recipes filled in with this model's head,
        attention layers and float stem."""
        if fmt == "onnx-int8":
            return replace(self.settings, int8=self.settings.int8.for_head(self.head, self.float_stem))
        if fmt == "openvino-int8":
            nncf = self.settings.nncf.for_head(self.head, self.attention, self.float_stem)
            return replace(self.settings, nncf=nncf)
        return self.settings

    def fields(self, fmt: str) -> dict:
        s = asdict(self.settings_for(fmt))
        for key, owner in ExportSettings.OWN.items():
            if fmt != owner:
                s.pop(key)  # e.g. the INT8 recipe must not invalidate the fp32 artifacts
        for key in ("attention", "attention_ranges", "attention_weights"):
            if key in s.get("nncf", {}) and not s["nncf"][key]:
                del s["nncf"][key]  # no attention layer: absent, so YOLOv8n's key stays as it was
        tools = {p: package_version(p) for p in FORMAT_TOOLS.get(fmt, ())}
        return {
            "exporter": EXPORTER_VERSION,
            "format": fmt,
            "weights_sha256": self.weights_sha256,
            "settings": s,
            "versions": {**toolchain_versions(), **tools},
        }

    def get(self, fmt: str) -> Artifact:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
        if fmt in ("openvino", "openvino-int8") and not openvino_available():
            raise ModuleNotFoundError("openvino is not installed (pip install openvino)")
        builders = {
            "torchscript": lambda d: build_torchscript(self.weights, d, self.settings),
            "onnx": lambda d: build_onnx(self.weights, d, self.settings),
            "openvino": lambda d: build_openvino(self.get("onnx").path, d, self.settings),
            "onnx-int8": lambda d: build_onnx_int8(
                self.get("onnx").path, d, self.settings_for("onnx-int8"), self._calibration()
            ),
            "openvino-int8": lambda d: build_openvino_int8(
                self.get("openvino").path, d, self.settings_for("openvino-int8"), self._calibration()
            ),
            "torchscript-frozen": lambda d: build_torchscript_frozen(self.weights, d, self.settings),
            "onnx-end2end": lambda d: build_onnx(self.weights, d, self.settings, end2end=True),
        }
        return self.cache.get_or_build(fmt, self.fields(fmt), FILENAMES[fmt], builders[fmt])


def export_ultralytics(weights: Path, out_dir: Path, fmt: str, imgsz: int, **kwargs: object) -> Path:
    """``YOLO(weights).export(format=fmt, imgsz=imgsz, device="cpu", **kwargs)``: ultralytics' own
    exporter (the peer's artifacts, never detbench's), run from ``out_dir`` on a copy of the weights
    there. It writes its export beside the weights, and with ``int8=True`` on ONNX deletes the fp32 file
    it quantized: give each export a folder of its own."""
    from ultralytics import YOLO

    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    local = out_dir / weights.name
    shutil.copy2(weights, local)
    with contextlib.chdir(out_dir), quiet_torch_exporters():
        return Path(YOLO(str(local)).export(format=fmt, imgsz=imgsz, device="cpu", **kwargs))


def export_onnx_ultralytics(weights: Path, out_dir: Path, imgsz: int, opset: int = 17) -> Path:
    """ultralytics' own ONNX exporter, for the cross-check test (never the primary artifact)."""
    return export_ultralytics(
        weights, out_dir, "onnx", imgsz, opset=opset, simplify=True, dynamic=False, verbose=False
    )


def untrained_checkpoint(
    scale: str, imgsz: int, names: Sequence[str] = CLASS_NAMES, family: str = "yolov8", bn_images: int = 0
) -> Path:
    """The cached untrained ``{family}{scale}`` checkpoint (built on first use), e.g. yolo11 + n;
    ``bn_images`` > 0: with BatchNorm statistics from that many scenes (scales.batchnorm_statistics)."""
    fields: dict[str, object] = {
        "scale": scale,
        "names": list(names),
        "imgsz": imgsz,
        "seed": 0,
        "versions": toolchain_versions(),
    }
    if family != "yolov8":  # absent for YOLOv8: its entries (and the exports keyed on them) stay valid
        fields["family"] = family
    if bn_images:  # absent otherwise, for the same reason
        fields["bn_images"] = bn_images
    ckpt = ArtifactCache().get_or_build(
        "untrained-checkpoint",
        fields,
        f"{family}{scale}.pt",
        lambda dest: scales.build_untrained_checkpoint(
            scale, dest, imgsz=imgsz, names=names, family=family, bn_images=bn_images
        ),
    )
    return ckpt.path
