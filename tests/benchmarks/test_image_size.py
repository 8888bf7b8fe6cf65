"""Latency of every backend on the baseline's weights exported at 640 px, batch 1.

The 128 px counterpart is test_latency_batch1; ``--benchmark-group-by=param`` puts each backend's
128 and 640 results side by side. The INT8 exports at 640 calibrate with bounded memory (see
``workbench_640``): ONNX Runtime holds the activations of a few images at a time (strided
calibration), NNCF reduces its statistics per image.
"""

from __future__ import annotations

import pytest

from detbench.plugin.compat import timing_enabled
from detbench.plugin.fixtures import backend_params, load_or_skip

from .conftest import ASSETS, anchors

IMGSZ = 640
pytestmark = [pytest.mark.benchmark(group=f"yolov8n-{IMGSZ}-batch1")]


@pytest.fixture(scope="session", params=backend_params())
def backend_640(request: pytest.FixtureRequest, workbench_640):
    if request.param == "pytorch-compile" and not timing_enabled(request.config):
        # The other backends' 640 px exports are cheap and checked here; a compile is not (80-90 s
        # per torch env in CI), and with timing off it would buy one call of a graph the suite
        # already checks at 128 px.
        pytest.skip("timing off: pytorch-compile at 640 px compiles only when timed (--benchmark-enable)")
    return load_or_skip(workbench_640, request.param)


def test_latency_yolov8n_640_batch1(timed, backend_640, make_input, model_info) -> None:
    """bus.jpg letterboxed to 640 px through backend.run; only that call is timed."""
    x = make_input(IMGSZ, images=[ASSETS / "bus.jpg"])
    out = timed(backend_640, x)
    assert out.shape == (1, 4 + len(model_info.names), anchors(IMGSZ))
