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
    r = measure_roofline([1], sizes=[64], repeats=1, precisions=("bf16",), flags=["avx2", "fma"])
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
    roof = Roofline(sizes=(8,), repeats=1, runs=runs)
    assert share(200.0, roof, "onnxruntime-int8", 1) == pytest.approx(0.5)
    assert share(200.0, roof, "onnxruntime", 1) == pytest.approx(2.0)
    assert share(200.0, roof, "onnxruntime-int8", 2) == pytest.approx(0.25)
    assert share(None, roof, "onnxruntime", 1) is None


def test_runtime_gemms_run_and_int8_beats_fp32() -> None:
    """ORT's fp32 and int8 GEMMs run here; on a VNNI CPU the int8 peak is above the fp32 one."""
    from detbench.perf.machine import cpu_flags

    r = measure_roofline([1], sizes=[512], repeats=3, runtimes=["onnxruntime"], precisions=("fp32", "int8"))
    fp32, int8 = r.peak("fp32", 1), r.peak("int8", 1)
    assert fp32 is not None and int8 is not None, r.runs
    if "avx512_vnni" in cpu_flags() or "avx_vnni" in cpu_flags():
        assert int8.gflops_per_s > fp32.gflops_per_s


def test_peak_is_the_best_over_sizes_and_passes() -> None:
    """A pass depressed by a neighbour, or a slow power-of-two size, cannot lower the peak."""
    first = Roofline(
        sizes=(768, 1024),
        repeats=5,
        runs=[
            GemmRun("onnxruntime", "fp32", 2, 768, 1.0, 207.0),
            GemmRun("onnxruntime", "fp32", 2, 1024, 1.0, 158.0),
        ],
    )
    loaded = Roofline(sizes=(768,), repeats=3, runs=[GemmRun("onnxruntime", "fp32", 2, 768, 1.0, 90.0)])
    both = loaded.merged(first)
    assert both.peak("fp32", 2).gflops_per_s == 207.0
    assert both.sizes == (768, 1024) and both.repeats == 5
    assert share(180.0, both, "onnxruntime", 2) < 1.0 < share(180.0, loaded, "onnxruntime", 2)


def test_roofline_sweeps_every_size() -> None:
    """Each requested size is timed for each precision and thread count, and reported with its n."""
    r = measure_roofline([1], sizes=[64, 96], repeats=1, runtimes=["onnxruntime"], precisions=("fp32",))
    assert sorted(run.n for run in r.runs) == [64, 96] and r.sizes == (64, 96)
    assert r.peak("fp32", 1).n in (64, 96)
    with pytest.raises(ValueError, match="sizes"):
        measure_roofline([1], sizes=[], repeats=1)
