"""The roofline: which precision each backend is judged against, the ISA choice, real GEMM peaks."""

from __future__ import annotations

import pytest

from detbench.perf.peak import GemmRun, Roofline, isa_choice, measure_roofline, precision_of, share


@pytest.mark.parametrize(
    ("backend", "precision"),
    [("onnxruntime", "fp32"), ("onnxruntime-int8", "int8"), ("openvino-bf16", "bf16"), ("pytorch", "fp32")],
)
def test_precision_by_name(backend: str, precision: str) -> None:
    """A backend without a declared precision is judged by its name's suffix."""
    assert precision_of(backend) == precision


def test_no_bf16_peak_without_native_bf16() -> None:
    """Without avx512_bf16/amx_bf16 no bf16 GEMM is timed, and the reason is recorded."""
    r = measure_roofline([1], n=64, repeats=1, precisions=("bf16",), flags=["avx2", "fma"])
    assert all(run.gflops_per_s is None and "no avx512_bf16" in (run.reason or "") for run in r.runs)
    assert isa_choice(["avx512_bf16"])["bf16"] and not isa_choice(["avx2"])["bf16"]


def test_share_uses_own_precision_and_threads() -> None:
    """An int8 backend is divided by the int8 peak at its thread count, never the fp32 one."""
    runs = [
        GemmRun("onnxruntime", "fp32", 1, 8, 1.0, 100.0),
        GemmRun("onnxruntime", "int8", 1, 8, 1.0, 400.0),
        GemmRun("openvino", "int8", 1, 8, 1.0, 300.0),
        GemmRun("onnxruntime", "int8", 2, 8, 1.0, 800.0),
    ]
    roof = Roofline(n=8, repeats=1, runs=runs)
    assert share(200.0, roof, "onnxruntime-int8", 1) == pytest.approx(0.5)
    assert share(200.0, roof, "onnxruntime", 1) == pytest.approx(2.0)
    assert share(200.0, roof, "onnxruntime-int8", 2) == pytest.approx(0.25)
    assert share(None, roof, "onnxruntime", 1) is None


def test_runtime_gemms_run_and_int8_beats_fp32() -> None:
    """ORT's fp32 and int8 GEMMs run here; on a VNNI CPU the int8 peak is above the fp32 one."""
    from detbench.perf.machine import cpu_flags

    r = measure_roofline([1], n=512, repeats=3, runtimes=["onnxruntime"], precisions=("fp32", "int8"))
    fp32, int8 = r.peak("fp32", 1), r.peak("int8", 1)
    assert fp32 is not None and int8 is not None, r.runs
    if "avx512_vnni" in cpu_flags() or "avx_vnni" in cpu_flags():
        assert int8.gflops_per_s > fp32.gflops_per_s
