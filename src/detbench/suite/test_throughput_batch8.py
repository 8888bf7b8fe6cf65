"""Throughput of every dynamic-batch backend on the baseline at 128 px, batch 8."""

from __future__ import annotations

import pytest

from detbench.model.checkpoint import anchor_count as anchors

BATCH = 8
pytestmark = [pytest.mark.benchmark(group=f"yolov8n-128-batch{BATCH}")]


def test_throughput_yolov8n_128_batch8(timed, benchmark, backend, make_input, model_info) -> None:
    """Eight images in one backend.run call; fixed-batch artifacts are skipped with the reason."""
    if not backend.dynamic_batch:
        pytest.skip(
            f"{backend.artifact} has a fixed batch of {backend.spec.batch}; batch {BATCH} needs a "
            "dynamic-batch export"
        )
    x = make_input(model_info.imgsz, BATCH)
    out = timed(backend, x)
    assert out.shape == (BATCH, 4 + len(model_info.names), anchors(model_info.imgsz))
    if "p50_ms" in benchmark.extra_info:
        benchmark.extra_info["images_per_s_p50"] = BATCH / (benchmark.extra_info["p50_ms"] / 1e3)
