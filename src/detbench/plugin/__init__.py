"""detbench's pytest plugin (``pytest11`` entry point ``detbench``): the wiring. Options, markers,
Hypothesis profiles and hooks that delegate; the session fixture chain dataset → baseline →
workbench (exports) → backend lives in ``detbench.plugin.fixtures`` (registered through
``pytest_plugins`` below), the run's recording and the compare/gate at its end in
``detbench.plugin.session``.

Installed with the package, so a user's repository gets all of it with no conftest of its own:

    pytest --pyargs detbench.suite --detbench-weights best.pt --detbench-data data.yaml \
        --detbench-artifact onnxruntime=deploy/model.onnx

Options live here and not in a conftest because pytest reads ``pytest_addoption`` only from
plugins and the rootdir's conftest, never from a package's conftest collected under ``--pyargs``.
Expensive things happen once per session and are cached on disk across sessions and across
pytest-xdist workers (``DETBENCH_CACHE``; exports and datasets are built under a file lock), so a
warm run does no export or dataset work and ``-n auto`` workers build each artifact once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detbench.paths import configure_environment
from detbench.plugin import fixtures
from detbench.plugin import session as run_session

# pytest registers these with the plugin (entry point or -p), so their fixtures need no conftest.
pytest_plugins = ["detbench.plugin.fixtures"]

# name → description; pytest's --strict-markers refuses any marker not listed here.
MARKERS = {
    "slow": "takes more than ~30 s (training, full-split accuracy); deselect with -m 'not slow'",
    "openvino": "needs OpenVINO, a declared dependency; deselect with -m 'not openvino'",
    "equivalence": "cross-backend equivalence (raw head, detections, mAP, determinism)",
    "calibration": "statistical calibration of the latency gate on real measurements",
    "families": "the family matrix: YOLO11n/12n/26n trained briefly, through every route (tox -e families)",
    "timing": "asserts on wall-clock ratios: serial only, skipped with the reason under pytest-xdist",
}
# Two saved runs are two sessions and nothing pairs them, so below this effect the session-to-session
# drift of a shared VM decides (docs/measurements.md); `detbench ab`, paired in one run, resolves 3 %.
SESSION_MIN_EFFECT = 0.6
# Re-timing a benchmark in this job stops here if the block cap has not come first (then: unknown).
REBASELINE_MAX_SECONDS = 120.0
REBASELINE_PLANS = ("full", "quick")  # detbench.history.rebaseline.PLANS, named here to import nothing


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    # Before any conftest imports ultralytics: it reads YOLO_OFFLINE and its settings dir on import.
    configure_environment()


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
        "--detbench-backends",
        metavar="NAME[,NAME...]",
        help="run the backend tests of these registered backends only (default: every one); tests of "
        "no backend still run, and pytorch stays the reference",
    )
    g.addoption(
        "--detbench-retrain",
        action="store_true",
        help="retrain the baseline (the settings of scripts/train_baseline.py) instead of loading it",
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
        "--detbench-compare-fail",
        action="store_true",
        help="with --benchmark-compare: judge this run against the compared one and exit 1 on a "
        "regression, instead of --benchmark-compare-fail's bare median threshold. Each benchmark whose "
        "saved artifact is retrievable is re-timed beside this session's in this job (paired, "
        "sequential verdict); the others get the unpaired gate on both runs' raw rounds "
        "(--benchmark-save-data), and each line says which",
    )
    g.addoption(
        "--detbench-compare-min-effect",
        type=float,
        default=SESSION_MIN_EFFECT,
        help="smallest median change between the two sessions that --detbench-compare-fail's unpaired "
        f"fallback calls a regression (default {SESSION_MIN_EFFECT}: measured session-to-session drift "
        "here, see README); re-timed benchmarks use the paired min effect (3 %)",
    )
    g.addoption(
        "--detbench-baseline-weights",
        type=Path,
        default=None,
        metavar="PATH",
        help="with --detbench-compare-fail: the compared run's weights, to re-time eager PyTorch "
        "benchmarks in this job (weights are pickles: never restored from a store); checked against "
        "the sha256 the saved run recorded. Without it they are judged unpaired, saying why",
    )
    g.addoption(
        "--detbench-unknown",
        choices=("pass", "fail"),
        default="pass",
        help="with --detbench-compare-fail: exit status of a re-timed benchmark whose verdict is "
        "'unknown' (the block or time cap came before a decision); default pass: reported, not failed",
    )
    g.addoption(
        "--detbench-rebaseline-plan",
        choices=tuple(REBASELINE_PLANS),
        default="full",
        help="blocks for re-timing baseline and candidate in this job: full (48 blocks of 30 calls at "
        "most) or quick (24 of 12: for tests and smoke runs; decides large changes, less often small ones)",
    )
    g.addoption(
        "--detbench-rebaseline-max-seconds",
        type=float,
        default=REBASELINE_MAX_SECONDS,
        metavar="S",
        help=f"time cap per re-timed benchmark (default {REBASELINE_MAX_SECONDS:g}); reaching it "
        "gives 'unknown'",
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
        default=None,
        metavar="TAG",
        help="name this run in the shared history (e.g. a release tag) for detbench gate --baseline TAG "
        "(default: $DETBENCH_HISTORY_TAG)",
    )


def pytest_configure(config: pytest.Config) -> None:
    from detbench.testing.profiles import load_profile

    configure_environment()  # also for pytest runs that loaded this plugin late (-p detbench.plugin)
    load_profile()
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    chosen_backends(config)  # an unknown name fails before collection, not after it


def under_xdist(config: pytest.Config) -> bool:
    """True in a pytest-xdist worker, or in the controller of an ``-n N`` run."""
    return hasattr(config, "workerinput") or bool(getattr(config.option, "numprocesses", None))


def chosen_backends(config: pytest.Config) -> tuple[str, ...] | None:
    """``--detbench-backends``' registered names (None: every backend); an unknown one is a usage error."""
    text = config.getoption("--detbench-backends")
    if text is None:
        return None
    from detbench.runtimes.backends import REGISTRY

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in REGISTRY]
    if unknown or not names:
        given = ", ".join(unknown) or "(none given)"
        raise pytest.UsageError(
            f"--detbench-backends: unknown backend {given}; registered: {', '.join(REGISTRY)}"
        )
    return names


def _other_backend(item: pytest.Item, chosen: tuple[str, ...]) -> bool:
    """True when ``item`` is parametrized with a backend (a fixture whose name ends in "backend",
    e.g. ``backend`` or the benchmarks' ``backend_640``) that is not one of ``chosen``."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(key.split("_")[0] == "backend" and value not in chosen for key, value in params.items())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = chosen_backends(config)
    if chosen:
        dropped = [item for item in items if _other_backend(item, chosen)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if not _other_backend(item, chosen)]
    # Timing beside other workers measures the neighbours, not the backend: refuse it visibly.
    if not under_xdist(config):
        return
    skip = pytest.mark.skip(reason="timing runs serially: rerun without -n (see README 'Scale-out')")
    for item in items:
        if item.get_closest_marker("timing"):
            item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    fixtures.parametrize_backend(metafunc)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked openvino fail (not skip) when OpenVINO cannot import: it is a declared dependency."""
    if item.get_closest_marker("openvino"):
        from detbench.testing.requirements import require_openvino

        require_openvino()


# -- pytest-benchmark hooks and the session's end (detbench.plugin.session) -------------------------


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    run_session.update_machine_info(config, machine_info)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    run_session.record(config, output_json)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    run_session.summarize_gate(terminalreporter, config)


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own finish(), which loads the compared run
def pytest_sessionfinish(session: pytest.Session) -> None:
    run_session.finish(session)
