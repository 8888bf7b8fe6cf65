"""Fixtures for the repository's latency benchmarks (the pytest-benchmark hooks are in the detbench
plugin, which pytest loads before it builds the machine info).

Only inference is timed: loading, exporting, preprocessing and warm-up all happen before the
``benchmark`` call. Ordinary runs pass ``--benchmark-disable`` (pyproject addopts), so every
benchmark runs once as a smoke test. Timing runs (README):

    pytest tests/benchmarks --benchmark-enable --benchmark-autosave --benchmark-save-data \
        --benchmark-min-rounds=15
    pytest tests/benchmarks --benchmark-enable --benchmark-compare --benchmark-compare-fail=median:10%

The ``timed`` and ``make_input`` fixtures come from the detbench plugin (the shipped suite's
batch-1 and batch-8 benchmarks use them too); this conftest adds the 640 px and model-scale workbenches.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detbench import CLASS_NAMES
from detbench.model.checkpoint import anchor_count
from detbench.runtimes.backends import BaseBackend
from detbench.runtimes.export import ExportSettings, Int8Recipe, NncfRecipe
from detbench.runtimes.workbench import Workbench
from detbench.testing.requirements import openvino_marks, require_backend

ASSETS = Path(__import__("ultralytics").__file__).parent / "assets"
SCALES = ("n", "s", "m", "l", "x")
SCALE_BACKENDS = ("pytorch", "torchscript", "onnxruntime", "openvino")
SCALE_IMGSZ = 128


def anchors(imgsz: int) -> int:
    return anchor_count(imgsz)


@pytest.hookimpl(tryfirst=True)  # scale first in the test id: yolov8s-onnxruntime
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scale" in metafunc.fixturenames:
        scales = [s.strip() for s in metafunc.config.getoption("--detbench-scales").split(",") if s.strip()]
        unknown = [s for s in scales if s not in SCALES]
        if unknown or not scales:
            raise pytest.UsageError(
                f"--detbench-scales: unknown scale(s) {', '.join(unknown) or '(none)'}; "
                f"choose from {', '.join(SCALES)}"
            )
        metafunc.parametrize("scale", scales, ids=[f"yolov8{s}" for s in scales], scope="session")


# -- other workbenches: 640 px, and untrained models of other scales ----------------------------------


@pytest.fixture(scope="session")
def workbench_640(workbench: Workbench, baseline: Path, dataset_yaml: Path) -> Workbench:
    """The baseline's weights exported at 640 px (cached like every export). --detbench-artifact
    overrides are not applied: a user's artifact has one input size, the baseline's."""
    return Workbench.from_options(
        baseline, dataset_yaml, imgsz=640, threads=workbench.settings.threads, export=EXPORT_640
    )


# INT8 at 640 px with bounded memory and CI-sized time: ORT's calibrator holds every activation of
# the images in one stride (~25x those of a 128 px image), so 2 at a time; 32 calibration images
# (a latency benchmark: accuracy is gated at 128 px with the full recipe).
EXPORT_640 = ExportSettings(
    int8=Int8Recipe(calibration_images=32, calib_stride=2),
    nncf=NncfRecipe(calibration_images=32),
)


@pytest.fixture(scope="session")
def scale_workbench(scale: str, pytestconfig: pytest.Config) -> Workbench:
    """Workbench of an untrained yolov8<scale> at 128 px: latency does not depend on the weights."""
    from detbench.runtimes.export import untrained_checkpoint

    weights = untrained_checkpoint(scale, SCALE_IMGSZ, CLASS_NAMES)
    return Workbench.from_options(
        weights, imgsz=SCALE_IMGSZ, threads=pytestconfig.getoption("--detbench-threads")
    )


def _scale_backend_params() -> list:
    return [pytest.param(n, id=n, marks=openvino_marks(n)) for n in SCALE_BACKENDS]


@pytest.fixture(scope="session", params=_scale_backend_params())
def scale_backend(request: pytest.FixtureRequest, scale_workbench: Workbench) -> BaseBackend:
    """fp32 backends on an untrained model of each --detbench-scales scale (INT8 needs a trained model)."""
    require_backend(request.param)
    return scale_workbench.load(request.param)
