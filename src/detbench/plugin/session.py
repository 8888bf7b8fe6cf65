"""The plugin's run state, as pytest-benchmark keeps its own in ``session.py``: what a timed run
records (machine info, the local and shared history) and, at the session's end, the gate on
``--benchmark-compare`` runs (``--detbench-compare-fail``). detbench.plugin's hooks call these.
"""

from __future__ import annotations

import pytest

from detbench.plugin import compat

_GATE_VERDICTS = pytest.StashKey[tuple]()
_RECORDER = pytest.StashKey[object]()


def update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """CPU model, ISA flags, machine id, runtime versions and threads; minus the current clock."""
    from detbench.perf import machine

    cpu = machine_info.get("cpu")
    if isinstance(cpu, dict):
        # The momentary clock differs run to run: --benchmark-compare would warn on every run.
        for key in ("hz_actual", "hz_actual_friendly"):
            cpu.pop(key, None)
    machine_info.update(machine.machine_info(config.getoption("--detbench-threads")))


def _recorder(config: pytest.Config):
    import os

    from detbench.history import store
    from detbench.history.recorder import RunRecorder

    target = store.history_target(config.getoption("--detbench-history"))
    tag = config.getoption("--detbench-history-tag") or os.environ.get(store.TAG_ENV) or None
    return config.stash.setdefault(_RECORDER, RunRecorder(target, tag=tag))


def record(config: pytest.Config, output_json: dict) -> None:
    """Keep every timed run in ``<cache>/history`` and, when set, the shared store (detbench.history)."""
    _recorder(config).record(output_json, enabled=compat.timing_enabled(config))


def _record_unsaved_run(config: pytest.Config) -> None:
    """With a shared store, a timed run is recorded even without --benchmark-json/--benchmark-autosave
    (pytest-benchmark only builds its JSON for those): build it here, raw samples included."""
    recorder = _recorder(config)
    if recorder.target is None or recorder.remote_id or recorder.error or not compat.timing_enabled(config):
        return
    output_json = compat.run_json(config)
    if output_json is not None:
        recorder.record(output_json, enabled=True)


def _gate_compared_runs(session: pytest.Session) -> None:
    """--detbench-compare-fail: the gate's verdicts on this run vs the compared one; 1 on a regression."""
    config = session.config
    if not config.getoption("--detbench-compare-fail") or not compat.timing_enabled(config):
        return
    from detbench.perf.gate import compare_benchmark_session

    verdicts, problems = compare_benchmark_session(
        compat.benchmark_session(config), min_effect=config.getoption("--detbench-compare-min-effect")
    )
    config.stash[_GATE_VERDICTS] = (verdicts, problems)
    failed = problems or not verdicts or any(v.status == "regression" for v in verdicts)
    if failed and session.exitstatus == 0:
        session.exitstatus = 1


def summarize_gate(terminalreporter, config: pytest.Config) -> None:
    """The gate's table and one verdict line in the terminal summary, when --detbench-compare-fail ran."""
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


def finish(session: pytest.Session) -> None:
    """The gate on compared runs; then a shared store that could not be written fails the session, in
    one line (the local file is kept). Runs after pytest-benchmark's own finish() (trylast hook)."""
    if compat.benchmark_session(session.config) is not None:
        _gate_compared_runs(session)
        _record_unsaved_run(session.config)
    recorder = session.config.stash.get(_RECORDER, None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for note in recorder.notes if recorder is not None and reporter is not None else ():
        if not note.stored:
            reporter.write_line(
                f"detbench: artifact {note.sha256[:16]}… ({note.format}) not stored: {note.reason}"
            )
    if recorder is None or recorder.error is None:
        return
    if reporter is not None:
        reporter.write_line(f"detbench: error: {recorder.error}", red=True, bold=True)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
