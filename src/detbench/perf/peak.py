"""This machine's GEMM peak per precision, measured with the runtimes' own kernels: the roofline.

A numpy/torch matmul is the wrong yardstick here: OpenBLAS is pinned to a Haswell core type in this
environment (AVX2 kernels) and MKL takes a slow path on AMD, while ONNX Runtime (MLAS) and OpenVINO
(oneDNN) run AVX-512 / VNNI / BF16 kernels, so fp32 backends "exceeded" that peak (104 %) and INT8
ones passed it further. Instead, one large MatMul is built as a model for each runtime and
precision and timed in the same run, at the backend's thread count:

- fp32: an ONNX MatMul (ONNX Runtime) and an OpenVINO MatMul at ``INFERENCE_PRECISION_HINT`` f32;
- bf16: the OpenVINO MatMul at ``INFERENCE_PRECISION_HINT`` bf16, only on CPUs with ``avx512_bf16`` or
  ``amx_bf16`` (elsewhere oneDNN would emulate it and the peak would mean nothing); ONNX Runtime's CPU
  provider has no bf16 MatMul, which the candidates record;
- int8: ONNX Runtime's ``MatMulInteger`` (u8 x s8) and OpenVINO's FakeQuantize + dequantized int8
  weights (NNCF's pattern), which its CPU plugin runs as an int8 FullyConnected.

OpenVINO's own runtime model is asked which precision each GEMM really ran in; one that ran in
another (e.g. bf16 instead of int8) is recorded as not measured, with the reason.

The peak of a precision is the best runtime's best repeat over several GEMM sizes: what the cores
reach when nothing interferes. One size is not enough: a power-of-two ``n`` strides every row onto
the same cache sets, and here the 1024 x 1024 fp32 GEMM ran at 158 GFLOP/s on 2 threads where 768
and 1536 ran at 207-216, so a conv model's batch-N rate "passed" that peak in CI (100.3 %). Each
precision also peaks at a different size (ORT int8 at 768, OpenVINO bf16 at 1536). A caller that can
measure twice around its timings merges the passes (``Roofline.merged``) so a neighbour's load during
one pass cannot lower the peak. A backend's share is its achieved rate against the peak of its own
precision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from detbench.schema import doc

PRECISIONS = ("fp32", "bf16", "int8")
SIZES = (512, 768, 1024, 1536)  # covers each precision's best size here; 2048 was slower for all
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class GemmRun:
    """One runtime's ``n x n`` GEMM at one precision: the best of ``repeats`` timed runs, or why not."""

    runtime: str = doc("the runtime whose kernel ran (onnxruntime, openvino)")
    precision: str = doc("fp32, bf16 or int8")
    threads: int = doc("threads it ran on")
    n: int = doc("the square GEMM's size")
    best_s: float | None = doc("best of the repeats, s; null: not measured")
    gflops_per_s: float | None = doc("2 n^3 / best_s / 1e9 (integer operations for int8)")
    reason: str | None = doc("why it was not measured; null when it was", default=None)


@dataclass(frozen=True)
class Roofline:
    """Peaks per (precision, threads), with every GEMM tried and the ISA choices made."""

    sizes: tuple[int, ...]
    repeats: int
    runs: list[GemmRun]
    isa: dict[str, Any] = field(default_factory=dict)  # flags seen and what they decided

    def peak(self, precision: str, threads: int) -> GemmRun | None:
        """The fastest measured GEMM of ``precision`` at ``threads`` threads; None when none ran."""
        done = [r for r in self.runs if r.precision == precision and r.threads == threads and r.gflops_per_s]
        return max(done, key=lambda r: r.gflops_per_s or 0.0, default=None)

    def merged(self, other: Roofline) -> Roofline:
        """Both passes' runs: each peak is then the best of the two."""
        sizes = tuple(sorted(set(self.sizes) | set(other.sizes)))
        return Roofline(
            sizes, max(self.repeats, other.repeats), [*self.runs, *other.runs], self.isa or other.isa
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sizes": list(self.sizes),
            "repeats": self.repeats,
            "isa": self.isa,
            "runs": [asdict(r) for r in self.runs],
        }


def precision_of(backend: str) -> str:
    """The arithmetic a registered backend computes in: its class's ``precision`` attribute where it
    has one, else by name (``*-int8`` int8, ``*-bf16`` bf16, anything else fp32)."""
    from detbench.runtimes.backends import REGISTRY

    declared = getattr(REGISTRY.get(backend), "precision", None)
    if declared in PRECISIONS:
        return str(declared)
    if backend.endswith("-int8"):
        return "int8"
    if backend.endswith("-bf16"):
        return "bf16"
    return "fp32"


def _gflops(n: int, seconds: float) -> float:
    return 2 * n**3 / seconds / 1e9


def _best_of(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: page in the buffers, let the runtime pick and JIT its kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _inputs(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "f32_a": rng.random((n, n), dtype=np.float32),
        "f32_b": rng.random((n, n), dtype=np.float32),
        "u8_a": rng.integers(0, 256, (n, n), dtype=np.uint8),
        "s8_b": rng.integers(-128, 128, (n, n), dtype=np.int8),
    }


# -- ONNX Runtime -------------------------------------------------------------------------------------


def _ort_gemm(precision: str, n: int, threads: int, data: dict[str, np.ndarray]) -> Callable[[], object]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if precision == "bf16":
        raise NotImplementedError("ONNX Runtime's CPU provider has no bfloat16 MatMul kernel")
    if precision == "fp32":
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])
        b = numpy_helper.from_array(data["f32_b"], "b")
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        feed = {"a": data["f32_a"]}
    else:
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])
        b = numpy_helper.from_array(data["s8_b"], "b")
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
        feed = {"a": data["u8_a"]}
    graph = helper.make_graph([node], f"gemm_{precision}", [a], [y], initializer=[b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()  # as the onnxruntime backends configure theirs
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    return lambda: session.run(None, feed)


# -- OpenVINO -----------------------------------------------------------------------------------------


def _ov_gemm(precision: str, n: int, threads: int, data: dict[str, np.ndarray]) -> Callable[[], object]:
    import openvino as ov
    import openvino.opset13 as ops

    a = ops.parameter([n, n], np.float32, name="a")
    if precision == "int8":
        # The pattern NNCF writes: u8 FakeQuantize on the activations, int8 weights dequantized by
        # Convert + Multiply; the CPU plugin runs the MatMul as an int8 FullyConnected.
        low, high = ops.constant(np.float32(0.0)), ops.constant(np.float32(1.0))
        a_in = ops.fake_quantize(a, low, high, low, high, 256)
        b_in = ops.multiply(ops.convert(ops.constant(data["s8_b"]), "f32"), ops.constant(np.float32(0.01)))
    else:
        a_in, b_in = a, ops.constant(data["f32_b"])
    model = ov.Model([ops.matmul(a_in, b_in, False, False)], [a], f"gemm_{precision}")
    hint = "bf16" if precision == "bf16" else "f32"
    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint},
    )
    ran = _ov_gemm_precision(compiled)
    wanted = {"fp32": ("f32",), "bf16": ("bf16",), "int8": ("u8", "i8")}[precision]
    if ran not in wanted:
        raise NotImplementedError(f"OpenVINO ran the {precision} GEMM in {ran} on this CPU")
    request = compiled.create_infer_request()
    x = data["f32_a"]
    return lambda: request.infer({0: x})


def _ov_gemm_precision(compiled: Any) -> str:
    """The precision the CPU plugin actually runs the GEMM node in (its runtime model says)."""
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        if rt["layerType"].astype(str) in ("FullyConnected", "MatMul"):
            return str(rt["runtimePrecision"].astype(str))
    return "unknown"


RUNTIMES: dict[str, Callable[[str, int, int, dict[str, np.ndarray]], Callable[[], object]]] = {
    "onnxruntime": _ort_gemm,
    "openvino": _ov_gemm,
}


def isa_choice(flags: Iterable[str]) -> dict[str, Any]:
    """Which precisions get a peak on a CPU with ``flags``, and why (recorded in the report)."""
    flags = set(flags)
    bf16 = sorted(flags & set(BF16_FLAGS))
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return {
        "flags": sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni", "avx2", "fma"))),
        "bf16": bool(bf16),
        "bf16_reason": f"native bf16 ({', '.join(bf16)})"
        if bf16
        else f"no {' / '.join(BF16_FLAGS)}: bf16 would be emulated, no bf16 peak",
        "int8_reason": f"int8 dot products in hardware ({', '.join(vnni)})"
        if vnni
        else "no VNNI: int8 GEMMs run on AVX2/AVX-512 multiply-add sequences",
    }


def measure_roofline(
    threads: Sequence[int],
    *,
    sizes: Sequence[int] = SIZES,
    repeats: int = 5,
    precisions: Sequence[str] = PRECISIONS,
    runtimes: Sequence[str] | None = None,
    flags: Iterable[str] | None = None,
) -> Roofline:
    """Every runtime's GEMM at every size, precision and thread count; failures are recorded, not raised."""
    from detbench.perf.machine import cpu_flags

    if not sizes or min(sizes) < 1 or repeats < 1 or not threads or min(threads) < 1:
        raise ValueError(f"sizes, repeats and threads must be positive, got {sizes}, {repeats}, {threads}")
    isa = isa_choice(cpu_flags() if flags is None else flags)
    names = list(runtimes or RUNTIMES)
    runs: list[GemmRun] = []
    for n in sorted(set(sizes)):
        runs += _runs_at(n, sorted(set(threads)), repeats, precisions, names, isa)
    return Roofline(sizes=tuple(sorted(set(sizes))), repeats=repeats, runs=runs, isa=isa)


def _runs_at(
    n: int,
    threads: Sequence[int],
    repeats: int,
    precisions: Sequence[str],
    names: Sequence[str],
    isa: dict[str, Any],
) -> list[GemmRun]:
    """Every runtime's ``n x n`` GEMM at every precision and thread count."""
    from detbench.runtimes.export import openvino_available

    data = _inputs(n)
    runs: list[GemmRun] = []
    for t in threads:
        for precision in precisions:
            for rt in names:
                reason = None
                if precision == "bf16" and not isa["bf16"]:
                    reason = isa["bf16_reason"]
                elif rt == "openvino" and not openvino_available():
                    reason = "openvino is not installed"
                if reason is None:
                    try:
                        best = _best_of(RUNTIMES[rt](precision, n, t, data), repeats)
                    except Exception as exc:  # each runtime's own error zoo: record it, keep going
                        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
                if reason is None:
                    runs.append(GemmRun(rt, precision, t, n, best, _gflops(n, best)))
                else:
                    runs.append(GemmRun(rt, precision, t, n, None, None, reason))
    return runs


def share(
    achieved_gflops_per_s: float | None, roofline: Roofline, backend: str, threads: int
) -> float | None:
    """``backend``'s achieved rate as a fraction of its own precision's peak at ``threads``."""
    peak = roofline.peak(precision_of(backend), threads)
    if achieved_gflops_per_s is None or peak is None or not peak.gflops_per_s:
        return None
    return achieved_gflops_per_s / peak.gflops_per_s
