"""The plugin's fixtures: the session chain dataset → baseline → model_info → workbench (exports) →
backend, ``reference``, ``backend_reference`` (with ``references``), ``raw_backend``,
``user_val_images``, ``load_at_threads``, ``val_limit``, and the benchmark
fixtures ``timed`` and ``make_input``.

``detbench.plugin`` names this module in ``pytest_plugins``, so pytest registers it wherever the
plugin is loaded (entry point or ``-p detbench.plugin``) and its fixtures reach ``pytest --pyargs
detbench.suite`` from any directory, with no conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

WARMUP_CALLS = 3  # first calls pay for lazy init (ORT/OpenVINO kernels, allocator growth)


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
def user_val_images(pytestconfig: pytest.Config, dataset) -> list[Path]:
    """The val images of --detbench-data, [] without it: the equivalence tests draw perturbed
    copies of them, since the synthetic scenes only fit the baseline's classes."""
    return dataset.images("val") if pytestconfig.getoption("--detbench-data") else []


@pytest.fixture(scope="session")
def baseline(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Baseline weights: --detbench-weights, else the committed fixture (sha256-verified)."""
    from detbench.model.baseline import resolve_weights

    if pytestconfig.getoption("--detbench-retrain"):
        from detbench.model.retrain import RetrainSettings, retrain

        out = tmp_path_factory.mktemp("retrained")
        retrain(RetrainSettings(out=out), command=f"python scripts/train_baseline.py --out {out}")
        return out / "best.pt"
    return resolve_weights(pytestconfig.getoption("--detbench-weights"))


@pytest.fixture(scope="session")
def model_info(baseline: Path):
    from detbench.model.checkpoint import load_detection_model

    return load_detection_model(baseline)[1]


@pytest.fixture(scope="session")
def workbench(pytestconfig: pytest.Config, baseline: Path, dataset_yaml: Path):
    from detbench.runtimes.workbench import Workbench

    return Workbench.from_options(
        baseline,
        dataset_yaml,
        threads=pytestconfig.getoption("--detbench-threads"),
        artifacts=pytestconfig.getoption("--detbench-artifact"),
    )


def backend_params() -> list:
    """One ``pytest.param`` per registered backend, with its marks; read when tests are generated so
    that loading the plugin (in every pytest run of an env with detbench installed) imports no runtime."""
    from detbench.runtimes.backends import REGISTRY
    from detbench.runtimes.export import openvino_available
    from detbench.testing.requirements import needs_openvino, openvino_marks

    # A backend that cannot run here (runtime absent, CPU lacks the instruction set) is skipped
    # with the reason its class gives, decided from this machine when tests are generated.
    params = []
    for name, cls in REGISTRY.items():
        marks = openvino_marks(name)
        # A missing OpenVINO is not a reason to skip: it is a declared dependency, and the openvino
        # mark's setup fails the test (detbench.plugin's pytest_runtest_setup); -m "not openvino" deselects.
        reason = cls.unavailable()
        if reason and not (needs_openvino(name) and not openvino_available()):
            marks.append(pytest.mark.skip(reason=f"{name}: {reason}"))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def _parametrizes_itself(metafunc: pytest.Metafunc, name: str) -> bool:
    """True when the test's own @pytest.mark.parametrize names ``name`` (a plain argument, then)."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if name in ([n.strip() for n in names.split(",")] if isinstance(names, str) else names):
            return True
    return False


def parametrize_backend(metafunc: pytest.Metafunc) -> None:
    """Give a test that uses ``backend`` (and does not parametrize it itself) every registered backend."""
    if "backend" in metafunc.fixturenames and not _parametrizes_itself(metafunc, "backend"):
        metafunc.parametrize("backend", backend_params(), indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest, workbench):
    """Every registered backend, loaded once per session. Test bodies never branch on its name; one
    these weights have no artifact for (end2end on a head without a one-to-one branch) is skipped
    with the backend's one-line reason."""
    return load_or_skip(workbench, request.param)


def load_or_skip(workbench, name: str):
    """``workbench.load(name)``; skipped with the backend's one-line reason where these weights have
    no artifact for it (end2end on a head without a one-to-one branch)."""
    from detbench.runtimes.backends import REGISTRY
    from detbench.testing.requirements import require_backend

    # OpenVINO is a declared dependency: missing is a failure (-m "not openvino" deselects).
    require_backend(name)
    if reason := REGISTRY[name].model_unavailable(workbench.weights):
        pytest.skip(f"{name}: {reason}")
    return workbench.load(name)


@pytest.fixture(scope="session")
def reference(workbench):
    """Eager PyTorch on the baseline weights: what every raw-head backend is compared with."""
    return workbench.load("pytorch")


@pytest.fixture(scope="session")
def references(reference) -> dict:
    """The references loaded so far, by name (``reference`` first): each is loaded once a session."""
    return {reference.name: reference}


@pytest.fixture(scope="session")
def backend_reference(backend, references: dict, workbench):
    """What ``backend`` is verified against (``runtimes.backends.reference_of``): ``reference`` for a
    raw head, the model's own end2end forward for end2end detections."""
    from detbench.runtimes.backends import reference_of

    name = reference_of(backend.name)
    if name not in references:
        references[name] = workbench.load(name)
    return references[name]


@pytest.fixture(scope="session")
def raw_backend(backend):
    """``backend`` for the tests that compare raw head tensors ``(N, 4+C, A)``; one whose output is
    already detections (the end2end export) is skipped, saying so."""
    if backend.output != "raw":
        pytest.skip(
            f"{backend.name} has no raw head: its output is end2end detections (N, K, 6), verified as "
            "detections and mAP against the model's own end2end forward"
        )
    return backend


@pytest.fixture(scope="session")
def load_at_threads(workbench):
    """``load_at_threads(name, threads)``: the backend on the workbench's artifacts at that thread
    count, loaded once per (name, threads); fails when openvino is needed and cannot import."""
    import dataclasses

    from detbench.runtimes.backends import BackendSettings
    from detbench.testing.requirements import require_backend

    loaded: dict[tuple[str, int], object] = {}

    def load(name: str, threads: int):
        require_backend(name)
        if (name, threads) not in loaded:
            bench = dataclasses.replace(workbench, settings=BackendSettings(threads=threads))
            loaded[name, threads] = bench.load(name)
        return loaded[name, threads]

    return load


@pytest.fixture(scope="session")
def val_limit(pytestconfig: pytest.Config) -> int | None:
    return pytestconfig.getoption("--detbench-val-images")


# -- benchmark fixtures -----------------------------------------------------------------------------


def workload_info(backend, *, batch: int, imgsz: int, weights: Path) -> dict:
    """What a benchmark ran: backend, threads, artifact and its size, versions, batch and image size,
    and the typed identity of all that (detbench.runtimes.identity, under ``IDENTITY_KEY``)."""
    from detbench.runtimes.cache import artifact_size
    from detbench.runtimes.identity import IDENTITY_KEY, identify

    assert backend.artifact is not None
    return {
        "backend": backend.name,
        "threads": backend.settings.threads,
        "batch": batch,
        "imgsz": imgsz,
        "artifact": str(backend.artifact),
        "artifact_bytes": artifact_size(backend.artifact),
        "versions": backend.describe(),
        IDENTITY_KEY: identify(backend, weights=weights, batch=batch, imgsz=imgsz).to_json(),
    }


@pytest.fixture
def timed(benchmark, baseline: Path) -> Callable[..., np.ndarray]:
    """``timed(backend, x)`` times ``backend.run(x)`` alone and fills ``benchmark.extra_info``."""
    from detbench.perf.gate import percentile_extra_info

    def run(backend, x: np.ndarray) -> np.ndarray:
        info = workload_info(backend, batch=x.shape[0], imgsz=x.shape[-1], weights=baseline)
        benchmark.extra_info.update(info)
        if not benchmark.disabled:
            for _ in range(WARMUP_CALLS):
                backend.run(x)
        out = benchmark(backend.run, x)
        benchmark.extra_info.update(percentile_extra_info(benchmark))
        return out

    return run


@pytest.fixture(scope="session")
def make_input(dataset) -> Callable[..., np.ndarray]:
    """``make_input(imgsz, batch=1, images=None)``: a real letterboxed batch, built once per key."""
    from detbench.runtimes.preprocess import preprocess

    cache: dict[tuple, np.ndarray] = {}
    val = dataset.images("val")

    def make(imgsz: int, batch: int = 1, images: Sequence[Path] | None = None) -> np.ndarray:
        chosen = list(images) if images is not None else val[:batch]
        if len(chosen) < batch:
            pytest.skip(f"need {batch} images for a batch of {batch}, have {len(chosen)}")
        chosen = (chosen * batch)[:batch]
        key = (imgsz, batch, tuple(chosen))
        if key not in cache:
            cache[key] = preprocess(chosen, imgsz)[0]
        return cache[key]

    return make
