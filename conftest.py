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
from detbench.perf import history, store
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
    g.addoption(
        "--detbench-history",
        default=None,
        metavar="URL",
        help="also write every timed run to this postgresql:// store (default: $DETBENCH_HISTORY; "
        "the local <cache>/history copy is always kept)",
    )
    g.addoption(
        "--detbench-history-tag",
        default=os.environ.get(store.TAG_ENV) or None,
        metavar="TAG",
        help="name this run in the shared history (e.g. a release tag) for detbench gate --baseline TAG",
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


_RECORDER = pytest.StashKey[store.RunRecorder]()


def _recorder(config: pytest.Config) -> store.RunRecorder:
    target = store.history_target(config.getoption("--detbench-history"))
    tag = config.getoption("--detbench-history-tag")
    return config.stash.setdefault(_RECORDER, store.RunRecorder(target, tag=tag))


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    """Keep every timed run in ``<cache>/history`` and, when set, the shared store (detbench.perf.store)."""
    _recorder(config).record(output_json, enabled=_timing_enabled(config))


def _record_unsaved_run(config: pytest.Config) -> None:
    """With a shared store, a timed run is recorded even without --benchmark-json/--benchmark-autosave
    (pytest-benchmark only builds its JSON for those): build it here, raw samples included."""
    recorder = _recorder(config)
    session = getattr(config, "_benchmarksession", None)
    if recorder.target is None or recorder.remote_id or recorder.error or not _timing_enabled(config):
        return
    if session is None or not session.benchmarks:
        return
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    output_json = config.hook.pytest_benchmark_generate_json(
        config=config,
        benchmarks=session.benchmarks,
        include_data=True,
        machine_info=session.get_machine_info(),
        commit_info=commit_info,
    )
    recorder.record(output_json, enabled=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A shared store that could not be written fails the session, in one line (the local file is kept)."""
    _record_unsaved_run(session.config)
    recorder = session.config.stash.get(_RECORDER, None)
    if recorder is None or recorder.error is None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"detbench: error: {recorder.error}", red=True, bold=True)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- a throwaway PostgreSQL cluster (detbench.testing.postgres) -------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster():
    """One Unix-socket-only cluster per session, stopped and removed afterwards; skips without binaries."""
    import shutil

    from detbench.testing import postgres

    reason = postgres.missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = postgres.start_cluster()
    yield cluster
    if cluster.running():
        cluster.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session cluster (no schema yet: first use creates it)."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    return postgres_cluster.create_database(f"{name}_{os.getpid()}_{id(request) % 10_000}")
