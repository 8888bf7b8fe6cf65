"""Latency of every backend on the baseline (yolov8n) at its own size (128 px), batch 1."""

from __future__ import annotations

import pytest

from detbench.runtimes.workbench import output_shape

pytestmark = [pytest.mark.benchmark(group="yolov8n-128-batch1")]


def test_latency_yolov8n_128_batch1(timed, backend, make_input, model_info) -> None:
    """One image through backend.run; only that call is timed."""
    x = make_input(model_info.imgsz)
    out = timed(backend, x)
    assert out.shape == output_shape(backend, 1, model_info.imgsz, len(model_info.names))
