"""Root fixtures: options, Hypothesis profiles, and the session chain
dataset → baseline → workbench (exports) → backend.

Expensive things happen once per session and are cached on disk across sessions
(``DETBENCH_CACHE``), so a warm run does no export or dataset work.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings

import detbench  # noqa: F401 - configures ultralytics' offline mode before anything imports it
from detbench.perf import history
from detbench.runtimes.backends import REGISTRY, BackendSettings, BaseBackend

# -- Hypothesis profiles (chosen with HYPOTHESIS_PROFILE) ------------------------------------------
_common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("dev", max_examples=20, **_common)
settings.register_profile("ci", max_examples=50, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile(
    "thorough", max_examples=300, print_blob=True, phases=list(Phase), verbosity=Verbosity.normal, **_common
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("detbench")
    g.addoption("--detbench-weights", type=Path, help="checkpoint to test instead of the committed baseline")
    g.addoption("--detbench-data", type=Path, help="data.yaml to use instead of the synthetic dataset")
    g.addoption(
        "--detbench-artifact",
        action="append",
        default=[],
        metavar="BACKEND=PATH",
        help="test this deploy artifact instead of exporting one (repeatable)",
    )
    g.addoption("--detbench-threads", type=int, default=1, help="threads for every backend (default 1)")
    g.addoption(
        "--detbench-retrain",
        action="store_true",
        help="retrain the baseline (scripts/train_baseline.py settings) instead of loading it",
    )
    g.addoption(
        "--detbench-scales",
        default="n",
        help="model scales for the scale benchmarks, comma-separated from n,s,m (default n)",
    )
    g.addoption(
        "--detbench-val-images",
        type=int,
        default=None,
        help="limit the accuracy tests to the first N val images (default: all)",
    )


# -- the fixture chain ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dataset_yaml(pytestconfig: pytest.Config) -> Path:
    """The YOLO data.yaml under test: the user's, or the synthetic one generated once into the cache."""
    from detbench.model.baseline import synthetic_dataset

    user = pytestconfig.getoption("--detbench-data")
    return Path(user).resolve() if user else synthetic_dataset()


@pytest.fixture(scope="session")
def dataset(dataset_yaml: Path):
    from detbench.data.datasets import load_dataset

    return load_dataset(dataset_yaml)


@pytest.fixture(scope="session")
def baseline(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Baseline weights: --detbench-weights, else the committed fixture (sha256-verified)."""
    from detbench.model.baseline import resolve_weights

    if pytestconfig.getoption("--detbench-retrain"):
        import runpy

        from detbench.paths import REPO_ROOT

        out = tmp_path_factory.mktemp("retrained")
        script = runpy.run_path(str(REPO_ROOT / "scripts" / "train_baseline.py"), run_name="retrain")
        script["main"](["--out", str(out)])
        return out / "best.pt"
    return resolve_weights(pytestconfig.getoption("--detbench-weights"))


@pytest.fixture(scope="session")
def model_info(baseline: Path):
    from detbench.model.checkpoint import load_detection_model

    return load_detection_model(baseline)[1]


@pytest.fixture(scope="session")
def workbench(pytestconfig: pytest.Config, baseline: Path, model_info, dataset):
    from detbench.runtimes.workbench import Workbench, parse_artifact_overrides

    return Workbench(
        weights=baseline,
        imgsz=model_info.imgsz,
        names=model_info.names,
        settings=BackendSettings(threads=pytestconfig.getoption("--detbench-threads")),
        overrides=parse_artifact_overrides(pytestconfig.getoption("--detbench-artifact")),
        calib_images=dataset.images("train"),
    )


def _backend_params() -> list:
    marks = {"openvino": [pytest.mark.openvino]}
    return [pytest.param(name, id=name, marks=marks.get(name, [])) for name in REGISTRY]


BACKEND_PARAMS = _backend_params()


@pytest.fixture(scope="session", params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest, workbench) -> BaseBackend:
    """Every registered backend, loaded once per session. Test bodies never branch on its name."""
    from detbench.runtimes.export import openvino_available

    if REGISTRY[request.param].artifact_format == "openvino" and not openvino_available():
        pytest.skip("openvino is not installed (optional dependency: pip install openvino)")
    return workbench.load(request.param)


@pytest.fixture(scope="session")
def load_at_threads(workbench):
    """``load_at_threads(name, threads)``: the backend on the workbench's artifacts at that thread
    count, loaded once per (name, threads); skips when openvino is needed and absent."""
    import dataclasses

    from detbench.runtimes.export import openvino_available

    loaded: dict[tuple[str, int], BaseBackend] = {}

    def load(name: str, threads: int) -> BaseBackend:
        if REGISTRY[name].artifact_format == "openvino" and not openvino_available():
            pytest.skip("openvino is not installed (optional dependency: pip install openvino)")
        if (name, threads) not in loaded:
            bench = dataclasses.replace(workbench, settings=BackendSettings(threads=threads))
            loaded[name, threads] = bench.load(name)
        return loaded[name, threads]

    return load


@pytest.fixture(scope="session")
def reference(workbench) -> BaseBackend:
    """Eager PyTorch on the baseline weights: what every backend is compared with."""
    return workbench.load("pytorch")


# -- pytest-benchmark hooks ------------------------------------------------------------------------


def _timing_enabled(config: pytest.Config) -> bool:
    """pytest-benchmark's own verdict: off for --benchmark-disable (unless --benchmark-enable), xdist."""
    session = getattr(config, "_benchmarksession", None)
    return session is not None and not session.disabled


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """CPU model, ISA flags, machine id, runtime versions and threads; minus the current clock."""
    cpu = machine_info.get("cpu")
    if isinstance(cpu, dict):
        # The momentary clock differs run to run: --benchmark-compare would warn on every run.
        for key in ("hz_actual", "hz_actual_friendly"):
            cpu.pop(key, None)
    machine_info.update(history.machine_info(config.getoption("--detbench-threads")))


_RECORDER = pytest.StashKey[history.HistoryRecorder]()


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    """Also keep every timed run in ``<cache>/history`` (atomic, locked; see detbench.perf.history)."""
    recorder = config.stash.setdefault(_RECORDER, history.HistoryRecorder())
    recorder.record(output_json, enabled=_timing_enabled(config))
