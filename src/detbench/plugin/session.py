"""The plugin's run state, as pytest-benchmark keeps its own in ``session.py``: what a timed run
records (machine info, the local and shared history) and, at the session's end, the gate on
``--benchmark-compare`` runs (``--detbench-compare-fail``). detbench.plugin's hooks call these.
"""

from __future__ import annotations

from pathlib import Path

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


def _rebaseline(session: pytest.Session, compared: dict) -> list:
    """Each compared benchmark's saved artifact re-timed beside this session's (history.rebaseline)."""
    import contextlib
    import tempfile

    from detbench.errors import HistoryStoreError
    from detbench.history import store
    from detbench.history.file import FileStore
    from detbench.history.rebaseline import PLANS, RebaselineSettings, Side, rebaseline

    config = session.config
    bench_session = compat.benchmark_session(config)
    candidates = {
        b.fullname: Side.from_extra_info(getattr(b, "extra_info", None))
        for b in getattr(bench_session, "benchmarks", [])
        if b
    }
    settings = RebaselineSettings(
        plan=PLANS[config.getoption("--detbench-rebaseline-plan")],
        max_seconds=config.getoption("--detbench-rebaseline-max-seconds"),
        baseline_weights=config.getoption("--detbench-baseline-weights"),
    )
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    comparisons = []
    with contextlib.ExitStack() as stack:
        stores = [FileStore()]
        target = store.history_target(config.getoption("--detbench-history"))
        if target is not None:
            try:
                stores.append(stack.enter_context(store.open_store(target)))
            except HistoryStoreError as exc:  # the recorder reports it too; the local history still serves
                if reporter is not None:
                    reporter.write_line(f"detbench gate: {exc}; searching the local history only", red=True)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="detbench-rebaseline-")))
        for mapping in compared.values():
            baselines = {name: Side.from_extra_info(e.get("extra_info")) for name, e in mapping.items()}
            comparisons += rebaseline(
                candidates,
                baselines,
                stores=stores,
                workdir=workdir,
                settings=settings,
                progress=(lambda line: reporter.write_line(f"detbench gate: {line}")) if reporter else None,
            )
    return comparisons


def _gate_compared_runs(session: pytest.Session) -> None:
    """--detbench-compare-fail: each benchmark re-timed in this job beside the compared run's artifact
    (paired), or else judged by the unpaired gate on the two runs' rounds; 1 on a regression (and on
    an unknown with --detbench-unknown=fail)."""
    config = session.config
    if not config.getoption("--detbench-compare-fail") or not compat.timing_enabled(config):
        return
    from detbench.history.rebaseline import fails, with_unpaired, write_step_summary
    from detbench.perf.gate import compare_benchmark_session

    bench_session = compat.benchmark_session(config)
    compared = getattr(bench_session, "compared_mapping", None) or {}
    comparisons = _rebaseline(session, compared) if compared else []
    paired = {c.name for c in comparisons if c.paired is not None}
    verdicts, problems = compare_benchmark_session(
        bench_session, min_effect=config.getoption("--detbench-compare-min-effect"), exclude=paired
    )
    comparisons = with_unpaired(comparisons, verdicts)
    config.stash[_GATE_VERDICTS] = (comparisons, problems)
    unknown_fails = config.getoption("--detbench-unknown") == "fail"
    if fails(comparisons, problems, unknown_fails=unknown_fails) and session.exitstatus == 0:
        session.exitstatus = 1
    write_step_summary(comparisons, problems, unknown_fails=unknown_fails)


def summarize_gate(terminalreporter, config: pytest.Config) -> None:
    """One line per benchmark (which comparison it got and its verdict), the unpaired table, and one
    verdict line, in the terminal summary when --detbench-compare-fail ran (rebaseline.summary_lines)."""
    if _GATE_VERDICTS not in config.stash:
        return
    from detbench.history.rebaseline import summary_lines

    comparisons, problems = config.stash[_GATE_VERDICTS]
    unknown_fails = config.getoption("--detbench-unknown") == "fail"
    terminalreporter.section("detbench gate (--detbench-compare-fail)")
    colours = {"bad": {"red": True}, "good": {"green": True}, "warn": {"yellow": True}}
    for line in summary_lines(comparisons, problems, unknown_fails=unknown_fails):
        terminalreporter.write_line(line.text, **colours.get(line.style, {}))


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
