"""Latency of every backend on the baseline's weights exported at 640 px, batch 1.

The 128 px counterpart is test_latency_batch1; ``--benchmark-group-by=param`` puts each backend's
128 and 640 results side by side. INT8 at 640 is skipped: its calibration would run 128 training
images through an every-tensor-is-an-output model at 640 px, and ONNX Runtime's percentile
calibrator keeps those activations for all of them (tens of GB, minutes of CPU). The INT8 speed-up
is benchmarked and budgeted at 128 px instead.
"""

from __future__ import annotations

import pytest

from detbench.plugin import backend_params

from .conftest import ASSETS, anchors

IMGSZ = 640
pytestmark = [pytest.mark.benchmark(group=f"yolov8n-{IMGSZ}-batch1")]
INT8_SKIP = (
    "INT8 at 640 px is not exported: calibrating it needs tens of GB and minutes of CPU "
    "(see this module's docstring); INT8 is benchmarked at 128 px"
)


@pytest.fixture(scope="session", params=backend_params())
def backend_640(request: pytest.FixtureRequest, workbench_640):
    from detbench.runtimes.backends import REGISTRY
    from detbench.testing.requirements import require_openvino

    fmt = REGISTRY[request.param].artifact_format
    if fmt == "onnx-int8":
        pytest.skip(INT8_SKIP)
    if fmt == "openvino":
        require_openvino()
    return workbench_640.load(request.param)


def test_latency_yolov8n_640_batch1(timed, backend_640, make_input, model_info) -> None:
    """bus.jpg letterboxed to 640 px through backend.run; only that call is timed."""
    x = make_input(IMGSZ, images=[ASSETS / "bus.jpg"])
    out = timed(backend_640, x)
    assert out.shape == (1, 4 + len(model_info.names), anchors(IMGSZ))
