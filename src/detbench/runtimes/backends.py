"""One backend protocol and its implementations, so every runtime is timed and compared alike.

A backend loads one artifact and maps a preprocessed batch ``(N, 3, H, W)`` float32 to the raw
head ``(N, 4 + classes, anchors)`` float32, or, where ``output`` is "detections" (the NMS-free
end2end export), to ``(N, K, 6)`` rows of x1, y1, x2, y2, score, class (``runtimes.end2end``).
Input checks live in ``BaseBackend.run`` so every backend refuses bad tensors with the same typed
error instead of crashing inside a runtime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from detbench._compat import quiet_torch_exporters
from detbench.errors import BackendError, ModelFileError
from detbench.model.checkpoint import check_model_file

DEFAULT_THREADS = 1  # one thread: stable timings on a shared machine; override with --threads


@dataclass(frozen=True)
class BackendSettings:
    threads: int = DEFAULT_THREADS
    ort_optimization: str = "all"  # disable | basic | extended | all (ORT GraphOptimizationLevel)


@runtime_checkable
class Backend(Protocol):
    name: str
    artifact_format: str | None  # export format it loads; None: the .pt checkpoint itself

    def load(self, artifact: Path) -> None: ...

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class InputSpec:
    """What an artifact accepts; ``batch`` is None when the batch dimension is dynamic."""

    batch: int | None
    channels: int
    height: int
    width: int


class BaseBackend:
    name: ClassVar[str]
    artifact_format: ClassVar[str | None]
    # Arithmetic precision of the bulk of the work: "fp32" | "bf16" | "int8". The roofline judges a
    # backend against the peak of its own precision, and tolerance rows differ by it.
    precision: ClassVar[str]
    # Why `detbench report` measures this backend only when named or with --full ("": always).
    opt_in: ClassVar[str] = ""
    # "raw": the raw head, postprocessed with NMS; "detections": end2end rows (runtimes.end2end).
    output: ClassVar[str] = "raw"

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this backend cannot run on this machine (missing runtime, CPU lacks an instruction
        set), or None. The suite skips it with this reason; the report leaves it out saying so."""
        return None

    @classmethod
    def model_unavailable(cls, weights: Path) -> str | None:
        """Why these weights have no artifact for this backend (its export needs a head they lack),
        naming the model; None where they have one."""
        return None

    def __init__(self, settings: BackendSettings | None = None) -> None:
        self.settings = settings or BackendSettings()
        self.artifact: Path | None = None
        self.spec: InputSpec | None = None

    # -- protocol --------------------------------------------------------------------------
    def load(self, artifact: Path | str) -> None:
        artifact = check_model_file(Path(artifact))
        try:
            self.spec = self._load(artifact)
        except (ModelFileError, BackendError):
            raise
        except Exception as exc:  # each runtime has its own exception zoo for bad files
            raise ModelFileError(
                artifact,
                f"{self.name} cannot load it ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0][:300]})",
            ) from exc
        self.artifact = artifact

    def run(self, batch: np.ndarray) -> np.ndarray:
        self._check(batch)
        out = self._run(batch)
        return np.asarray(out, dtype=np.float32)

    def run_batched(self, x: np.ndarray, batch: int = 8) -> np.ndarray:
        """Run any number of images in chunks this artifact accepts: ``batch`` at a time where the
        batch is dynamic, else its fixed batch, the last chunk padded with copies and trimmed."""
        if self.spec is None:
            raise BackendError(f"{self.name}: run() before load()")
        step = batch if self.spec.batch is None else self.spec.batch
        outs = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            n = len(chunk)
            if n < step and self.spec.batch is not None:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            outs.append(self.run(chunk)[:n])
        return np.concatenate(outs)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "precision": self.precision,
            "artifact": str(self.artifact),
            **asdict(self.settings),
            **self._describe(),
        }

    @property
    def dynamic_batch(self) -> bool:
        return self.spec is not None and self.spec.batch is None

    # -- for subclasses -----------------------------------------------------------------------
    def _load(self, artifact: Path) -> InputSpec:
        raise NotImplementedError

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _describe(self) -> dict[str, Any]:
        return {}

    def _check(self, batch: np.ndarray) -> None:
        if self.spec is None:
            raise BackendError(f"{self.name}: run() before load()")
        if not isinstance(batch, np.ndarray):
            raise BackendError(f"{self.name}: input must be a numpy array, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise BackendError(f"{self.name}: input dtype must be float32, got {batch.dtype}")
        if batch.ndim != 4:
            raise BackendError(
                f"{self.name}: input must be NCHW (rank 4), got rank {batch.ndim} shape {batch.shape}"
            )
        s = self.spec
        if batch.shape[1:] != (s.channels, s.height, s.width):
            raise BackendError(
                f"{self.name}: input shape {batch.shape} does not fit artifact "
                f"{self.artifact} which takes (N, {s.channels}, {s.height}, {s.width})"
            )
        if s.batch is not None and batch.shape[0] != s.batch:
            raise BackendError(
                f"{self.name}: artifact {self.artifact} has a fixed batch of {s.batch}; "
                f"got batch {batch.shape[0]} (export with dynamic batch)"
            )
        if batch.shape[0] == 0:
            raise BackendError(f"{self.name}: empty batch")
        if not np.isfinite(batch).all():
            raise BackendError(f"{self.name}: input contains NaN or Inf")


def _use_threads(torch: Any, n: int) -> None:
    """torch's thread count is process-wide: another torch backend loaded at another count (the
    report's all-cores column, tune's thread sweep) changes it for every one. Each torch-run backend
    re-applies its own before a call; unchanged, that is one cheap check."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class _TorchModule:
    """``self.model`` is a torch module (eager or TorchScript): one call path and description."""

    settings: BackendSettings
    model: Any

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        _use_threads(torch, self.settings.threads)
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).numpy()

    def _describe(self) -> dict[str, Any]:
        import torch

        return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


class PyTorchBackend(_TorchModule, BaseBackend):
    """Eager PyTorch: the baseline every other backend is compared with."""

    name = "pytorch"
    artifact_format = None
    precision = "fp32"

    def _load(self, artifact: Path) -> InputSpec:
        import torch

        from detbench.model.checkpoint import load_detection_model

        torch.set_num_threads(self.settings.threads)
        self.model, self.info = load_detection_model(artifact)
        return InputSpec(None, 3, self.info.imgsz, self.info.imgsz)

    def set_imgsz(self, imgsz: int) -> None:
        """Eager models take any stride-multiple size; the suite pins one so all backends match."""
        assert self.spec is not None
        self.spec = InputSpec(None, 3, imgsz, imgsz)


# Compiled modules of this process, by (checkpoint, its mtime and size, threads): compiling costs
# ~40 s per input shape, so a second load of the same weights (report, budgets, tune) reuses it.
# Threads are part of the key because inductor bakes the OpenMP thread count into its kernels.
_COMPILED: dict[tuple[str, int, int, int], Any] = {}


# ultralytics' C2f.forward graph-breaks, so dynamo compiles one frame per C2f shape and thread count;
# its default of 8 made later configurations run C2f eagerly (docs/measurements.md). 128 covers 8 C2f
# shapes x 8 thread counts x 2 image sizes.
RECOMPILE_LIMIT = 128


class PyTorchCompileBackend(PyTorchBackend):
    """Eager PyTorch compiled by ``torch.compile`` (inductor, weights frozen into the graph).

    Loaded from the .pt like ``pytorch``. The batch is fixed at 1 and shapes are static
    (``dynamic=False``): each new shape costs a compile (~40 s here), so the suite sees one per
    image size, and batch-1 latency is what this configuration is for. Compiling happens at the
    first call of each shape (``Workbench.load``'s probe), with inductor's freezing on.
    """

    name = "pytorch-compile"
    artifact_format = None
    precision = "fp32"
    opt_in = "torch.compile's first call compiles for 20-30 s"

    @classmethod
    def unavailable(cls) -> str | None:
        from detbench._compat import torch_compile_unavailable

        return torch_compile_unavailable()

    def _load(self, artifact: Path) -> InputSpec:
        import torch

        reason = self.unavailable()
        if reason:
            raise BackendError(f"{self.name}: {reason}")
        spec = super()._load(artifact)
        st = artifact.stat()
        key = (str(artifact.resolve()), st.st_mtime_ns, st.st_size, self.settings.threads)
        if key not in _COMPILED:
            with quiet_torch_exporters():  # torch 2.13's dynamo trips its own TorchScript deprecations
                _COMPILED[key] = torch.compile(self.model, backend="inductor", dynamic=False)
        self.compiled = _COMPILED[key]
        return InputSpec(1, 3, spec.height, spec.width)

    def set_imgsz(self, imgsz: int) -> None:
        self.spec = InputSpec(1, 3, imgsz, imgsz)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch
        from torch._dynamo import config as dynamo_config
        from torch._inductor import config as inductor_config

        _use_threads(torch, self.settings.threads)
        # Freezing folds the weights into the compiled graph as constants (what the issue
        # measured); patched only around the call so importing or loading changes no global.
        with (
            torch.no_grad(),
            inductor_config.patch(freezing=True),
            dynamo_config.patch(recompile_limit=RECOMPILE_LIMIT),
            quiet_torch_exporters(),
        ):
            return self.compiled(torch.from_numpy(batch)).numpy()


class PyTorchEnd2EndBackend(PyTorchBackend):
    """Eager PyTorch with the head's one-to-one branch selected: the model's own end2end forward,
    ``(N, min(300, anchors), 6)`` rows. The reference of the backends whose ``output`` is
    "detections"; not registered, since it is what they are compared with, not a deployment."""

    name = "pytorch-end2end"
    output = "detections"

    @classmethod
    def model_unavailable(cls, weights: Path) -> str | None:
        return OnnxRuntimeEnd2EndBackend.model_unavailable(weights)

    def _load(self, artifact: Path) -> InputSpec:
        import torch

        from detbench.model.checkpoint import load_detection_model

        torch.set_num_threads(self.settings.threads)
        self.model, self.info = load_detection_model(artifact, end2end=True)
        return InputSpec(None, 3, self.info.imgsz, self.info.imgsz)


class TorchScriptBackend(_TorchModule, BaseBackend):
    name = "torchscript"
    artifact_format = "torchscript"
    precision = "fp32"

    def _load(self, artifact: Path) -> InputSpec:
        import torch

        from detbench._compat import quiet_torch_exporters

        torch.set_num_threads(self.settings.threads)
        extra = {TORCHSCRIPT_META: ""}
        with quiet_torch_exporters():
            self.model = torch.jit.load(str(artifact), map_location="cpu", _extra_files=extra).eval()
        imgsz = _torchscript_imgsz(self.model, artifact, extra)
        return InputSpec(None, 3, imgsz, imgsz)


class TorchScriptFrozenBackend(TorchScriptBackend):
    """``torch.jit.freeze`` of the traced module, weights inlined as constants (its own export
    format, so its own cached artifact; ``build_torchscript_frozen`` says why no optimize pass)."""

    name = "torchscript-frozen"
    artifact_format = "torchscript-frozen"
    precision = "fp32"


TORCHSCRIPT_META = "config.txt"  # the extra file ultralytics' TorchScript exports carry too


def _torchscript_imgsz(model: Any, artifact: Path, extra: dict[str, str | bytes]) -> int:
    """A traced YOLO bakes its anchors for one input size. Our exports (and ultralytics') record it in
    an extra file; for others, probe square sizes in steps of 32 until one runs."""
    import json

    import torch

    try:
        imgsz = json.loads(extra.get(TORCHSCRIPT_META) or "{}").get("imgsz")
    except (ValueError, AttributeError):
        imgsz = None
    if isinstance(imgsz, list) and imgsz:
        imgsz = imgsz[0]
    if isinstance(imgsz, int) and imgsz > 0:
        return imgsz
    for size in range(32, 1281, 32):
        try:
            with torch.inference_mode():
                model(torch.zeros(1, 3, size, size))
            return size
        except Exception:
            continue
    raise ModelFileError(artifact, "cannot determine the traced input size (not a traced YOLO detector?)")


class OnnxRuntimeBackend(BaseBackend):
    name = "onnxruntime"
    artifact_format = "onnx"
    precision = "fp32"
    _LEVELS: ClassVar[dict[str, str]] = {
        "disable": "ORT_DISABLE_ALL",
        "basic": "ORT_ENABLE_BASIC",
        "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL",
    }

    def _load(self, artifact: Path) -> InputSpec:
        import onnxruntime as ort

        from detbench.runtimes.onnx_checks import check_onnx_file

        check_onnx_file(artifact)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.settings.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = self._LEVELS.get(self.settings.ort_optimization)
        if level is None:
            raise BackendError(
                f"unknown ORT optimization level {self.settings.ort_optimization!r}; "
                f"choose from {', '.join(self._LEVELS)}"
            )
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(artifact), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        return _spec_from_shape(artifact, inp.shape)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def _describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "providers": self.session.get_providers()}


class OnnxRuntimeInt8Backend(OnnxRuntimeBackend):
    """Static QDQ INT8 (``Int8Recipe``); ``reduce_range`` chosen from the CPU at export."""

    name = "onnxruntime-int8"
    artifact_format = "onnx-int8"
    precision = "int8"


class OnnxRuntimeEnd2EndBackend(OnnxRuntimeBackend):
    """The NMS-free export of a one-to-one head (YOLO26, YOLOv10): ONNX Runtime returns the ranked
    detections ``(N, min(300, anchors), 6)``; ``runtimes.end2end.postprocess_end2end`` thresholds and
    un-letterboxes them, no NMS. It has no raw head, so it is verified against the model's own end2end
    forward (``PyTorchEnd2EndBackend``, ``reference_of``) as detections and by mAP; the one-to-many
    ``onnxruntime`` export (with NMS) stays the reference of every raw-head backend."""

    name = "onnxruntime-end2end"
    artifact_format = "onnx-end2end"
    precision = "fp32"
    output = "detections"

    @classmethod
    def model_unavailable(cls, weights: Path) -> str | None:
        from detbench.model.checkpoint import end2end_unavailable, load_detection_model

        return end2end_unavailable(load_detection_model(weights)[1].head)


class OpenVINOBackend(BaseBackend):
    name = "openvino"
    artifact_format = "openvino"
    precision = "fp32"
    inference_precision: ClassVar[str] = "f32"  # OpenVINO's INFERENCE_PRECISION_HINT

    @classmethod
    def unavailable(cls) -> str | None:
        from detbench.runtimes.export import openvino_available

        return None if openvino_available() else "openvino is not installed (pip install openvino)"

    def _load(self, artifact: Path) -> InputSpec:
        import openvino as ov

        xml = _ir_xml(artifact) if artifact.is_dir() else artifact
        if xml.suffix != ".xml":
            raise ModelFileError(artifact, "expected an OpenVINO IR (.xml next to its .bin, or their folder)")
        check_model_file(xml)
        check_model_file(xml.with_suffix(".bin"))
        _check_ir_xml(xml)
        core = ov.Core()
        try:
            model = core.read_model(str(xml), str(xml.with_suffix(".bin")))
            self.compiled = core.compile_model(
                model,
                "CPU",
                {
                    "INFERENCE_NUM_THREADS": self.settings.threads,
                    "PERFORMANCE_HINT": "LATENCY",
                    # f32 unless a subclass asks: OpenVINO's CPU default is bf16 where the CPU has it.
                    "INFERENCE_PRECISION_HINT": self.inference_precision,
                },
            )
        except RuntimeError as exc:
            raise ModelFileError(xml, f"OpenVINO cannot read this IR ({_openvino_reason(exc)})") from exc
        self.request = self.compiled.create_infer_request()
        pshape = model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in pshape]
        return _spec_from_shape(artifact, dims)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        return self.request.get_output_tensor(0).data.copy()

    def _describe(self) -> dict[str, Any]:
        import openvino as ov

        return {
            "openvino": ov.__version__,
            "ov_threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
        }


def _ir_xml(folder: Path) -> Path:
    """The one IR in a folder: ours hold ``model.xml``, ultralytics' ``<stem>_openvino_model/`` hold
    ``<stem>.xml`` (plus ``metadata.yaml``); more than one is ambiguous, so it is refused."""
    xmls = sorted(folder.glob("*.xml"))
    if len(xmls) != 1:
        found = ", ".join(p.name for p in xmls) or "none"
        raise ModelFileError(folder, f"expected one OpenVINO IR .xml in this folder, found {found}")
    return xmls[0]


class OpenVINOBf16Backend(OpenVINOBackend):
    """The fp32 IR compiled with INFERENCE_PRECISION_HINT bf16: oneDNN's AVX512_BF16 / AMX kernels."""

    name = "openvino-bf16"
    artifact_format = "openvino"  # the same fp32 IR: bf16 is a compile-time choice
    precision = "bf16"
    inference_precision = "bf16"
    CPU_FLAGS: ClassVar[tuple[str, ...]] = ("avx512_bf16", "amx_bf16")

    @classmethod
    def unavailable(cls) -> str | None:
        from detbench.cpuinfo import has_any_flag

        if reason := super().unavailable():
            return reason
        if not has_any_flag(*cls.CPU_FLAGS):
            # Elsewhere OpenVINO quietly runs f32 for a bf16 hint (or emulates it): not this backend.
            return f"this CPU has none of {', '.join(cls.CPU_FLAGS)} (/proc/cpuinfo flags): no native bf16"
        return None

    def _load(self, artifact: Path) -> InputSpec:
        if reason := self.unavailable():
            raise BackendError(f"{self.name}: {reason}")
        spec = super()._load(artifact)
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != "bf16":
            raise BackendError(f"{self.name}: OpenVINO compiled with precision {got}, not bf16")
        return spec


class OpenVINOInt8Backend(OpenVINOBackend):
    """NNCF post-training INT8 (``NncfRecipe``); its float parts (the Detect head) run in f32."""

    name = "openvino-int8"
    artifact_format = "openvino-int8"
    precision = "int8"

    @classmethod
    def unavailable(cls) -> str | None:
        import importlib.util

        if reason := super().unavailable():
            return reason
        if importlib.util.find_spec("nncf") is None:  # builds the artifact (export.build_openvino_int8)
            return "nncf is not installed (pip install nncf)"
        return None


def _check_ir_xml(xml: Path) -> None:
    """Refuse a non-IR .xml ourselves: OpenVINO would offer it to every frontend (TF, Paddle, ...),
    which print parse errors straight to the process's stderr before failing with a vague message."""
    from xml.etree import ElementTree

    try:
        _, root = next(ElementTree.iterparse(str(xml), events=("start",)))  # reads only the head
    except (ElementTree.ParseError, StopIteration) as exc:
        raise ModelFileError(xml, f"not an OpenVINO IR: not valid XML ({exc or 'no element'})") from None
    if root.tag != "net":
        raise ModelFileError(xml, f"not an OpenVINO IR: root element is <{root.tag}>, expected <net>")


def _openvino_reason(exc: Exception) -> str:
    """OpenVINO's message without its source-location lines (``Exception from src/...``, ``Check ...``)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))]
    return "; ".join(useful or lines[-1:])[:300]


def _spec_from_shape(artifact: Path, shape: list[Any]) -> InputSpec:
    if len(shape) != 4:
        raise ModelFileError(artifact, f"input has rank {len(shape)}; expected NCHW (rank 4)")
    batch, c, h, w = (d if isinstance(d, int) else None for d in shape)
    if c is None or h is None or w is None:
        raise ModelFileError(artifact, f"input shape {shape} must have static channels, height and width")
    return InputSpec(batch, c, h, w)


REGISTRY: dict[str, type[BaseBackend]] = {
    cls.name: cls
    for cls in (
        PyTorchBackend,
        TorchScriptBackend,
        OnnxRuntimeBackend,
        OpenVINOBackend,
        OnnxRuntimeInt8Backend,
        OpenVINOBf16Backend,
        OpenVINOInt8Backend,
        TorchScriptFrozenBackend,
        PyTorchCompileBackend,
        OnnxRuntimeEnd2EndBackend,
    )
}


# The reference of each kind of output: the raw head is compared with eager PyTorch's, end2end
# detections with the same model's own one-to-one forward (the one-to-many head is another head).
REFERENCES: dict[str, type[BaseBackend]] = {"raw": PyTorchBackend, "detections": PyTorchEnd2EndBackend}


def reference_of(name: str) -> str:
    """The backend ``name`` is verified against: ``pytorch``, or ``pytorch-end2end`` for end2end output."""
    return REFERENCES[REGISTRY[name].output].name


def create(name: str, settings: BackendSettings | None = None) -> BaseBackend:
    """A registered backend, or a reference (``REFERENCES``) by its name."""
    known = {**REGISTRY, **{cls.name: cls for cls in REFERENCES.values()}}
    try:
        return known[name](settings)
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(REGISTRY)}") from None
