"""Throughput of every dynamic-batch backend on the baseline at 128 px, batch 8."""

from __future__ import annotations

import pytest

from detbench.runtimes.workbench import output_shape

BATCH = 8
pytestmark = [pytest.mark.benchmark(group=f"yolov8n-128-batch{BATCH}")]


def test_throughput_yolov8n_128_batch8(timed, benchmark, backend, make_input, model_info) -> None:
    """Eight images in one backend.run call; fixed-batch artifacts are skipped with the reason."""
    if not backend.dynamic_batch:
        pytest.skip(
            f"{backend.name} on {backend.artifact.name} takes a fixed batch of {backend.spec.batch}; "
            f"batch {BATCH} needs a dynamic-batch export (or a backend compiled for it)"
        )
    x = make_input(model_info.imgsz, BATCH)
    out = timed(backend, x)
    assert out.shape == output_shape(backend, BATCH, model_info.imgsz, len(model_info.names))
    if "p50_ms" in benchmark.extra_info:
        benchmark.extra_info["images_per_s_p50"] = BATCH / (benchmark.extra_info["p50_ms"] / 1e3)
