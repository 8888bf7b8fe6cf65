"""The repository's own test configuration: nothing beyond the detbench plugin.

Options, markers, Hypothesis profiles and the fixture chain (dataset → baseline → workbench →
backend) come from ``detbench.plugin``, registered under the ``pytest11`` entry point, so the
repository's tests and a user's ``pytest --pyargs detbench.suite`` run on the same fixtures.

Pending its move into the plugin: ``--detbench-compare-fail`` (the gate on the pytest-benchmark route).
"""

from __future__ import annotations

import pytest

_GATE_VERDICTS = pytest.StashKey[tuple]()
# Two saved runs are two sessions, and nothing pairs them: 21 back-to-back A/A sessions of the ONNX
# benchmark on the 2-core development VM (same artifact, under the CPU lock) moved the median by up
# to +50 % / -33 % from one session to the next (the machine flips between ~1.95 and ~2.8 ms states).
# Below that the pytest route cannot tell a regression from the machine; `detbench ab` can (3 %).
SESSION_MIN_EFFECT = 0.6


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked openvino fail (not skip) when OpenVINO cannot import: it is a declared dependency."""
    if item.get_closest_marker("openvino"):
        from detbench.testing.requirements import require_openvino

        require_openvino()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("detbench").addoption(
        "--detbench-compare-fail",
        action="store_true",
        help="with --benchmark-compare: judge this run against the compared one with detbench's gate "
        "(Mann-Whitney + bootstrap CI on the raw rounds; both runs need --benchmark-save-data) and "
        "exit 1 on a regression, instead of --benchmark-compare-fail's bare median threshold",
    )
    parser.getgroup("detbench").addoption(
        "--detbench-compare-min-effect",
        type=float,
        default=SESSION_MIN_EFFECT,
        help="smallest median change between the two sessions that --detbench-compare-fail calls a "
        f"regression (default {SESSION_MIN_EFFECT}: measured session-to-session drift here, see README)",
    )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After pytest-benchmark's finish(): the gate's verdicts, and exit status 1 on a regression."""
    config = session.config
    bench = getattr(config, "_benchmarksession", None)
    if not config.getoption("--detbench-compare-fail") or bench is None or bench.disabled:
        return
    from detbench.perf.gate import compare_benchmark_session

    verdicts, problems = compare_benchmark_session(
        bench, min_effect=config.getoption("--detbench-compare-min-effect")
    )
    config.stash[_GATE_VERDICTS] = (verdicts, problems)
    failed = problems or not verdicts or any(v.status == "regression" for v in verdicts)
    if failed and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _GATE_VERDICTS not in config.stash:
        return
    from detbench.perf.gate import format_table

    verdicts, problems = config.stash[_GATE_VERDICTS]
    terminalreporter.section("detbench gate (--detbench-compare-fail)")
    if verdicts:
        terminalreporter.write_line(format_table(verdicts))
    for line in problems:
        terminalreporter.write_line(f"detbench gate: {line}", red=True)
    regressed = [v.name for v in verdicts if v.status == "regression"]
    if regressed:
        terminalreporter.write_line(f"detbench gate: regression in {', '.join(regressed)}", red=True)
    elif not verdicts and not problems:
        terminalreporter.write_line("detbench gate: no benchmark in both runs", red=True)
    elif not problems:
        terminalreporter.write_line("detbench gate: no regression", green=True)


@pytest.fixture(scope="session")
def load_at_threads(workbench):
    """``load_at_threads(name, threads)``: the backend on the workbench's artifacts at that thread
    count, loaded once per (name, threads); fails when openvino is needed and cannot import."""
    import dataclasses

    from detbench.runtimes.backends import REGISTRY, BackendSettings
    from detbench.testing.requirements import require_openvino

    loaded: dict[tuple[str, int], object] = {}

    def load(name: str, threads: int):
        if REGISTRY[name].artifact_format == "openvino":
            require_openvino()
        if (name, threads) not in loaded:
            bench = dataclasses.replace(workbench, settings=BackendSettings(threads=threads))
            loaded[name, threads] = bench.load(name)
        return loaded[name, threads]

    return load
