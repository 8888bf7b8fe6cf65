"""pytest-benchmark's run state, reached in one place: it is ``config._benchmarksession``, a private
attribute with no public accessor, so an upstream rename breaks this module and nothing else.

pytest-benchmark is a test extra, not a dependency: without it there is no session, and every
helper here says so (None, False) instead of importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest
    from pytest_benchmark.session import BenchmarkSession


def benchmark_session(config: pytest.Config) -> BenchmarkSession | None:
    """pytest-benchmark's ``BenchmarkSession`` of this run, or None where the plugin is not loaded."""
    return getattr(config, "_benchmarksession", None)


def timing_enabled(config: pytest.Config) -> bool:
    """pytest-benchmark's own verdict: off for --benchmark-disable (unless --benchmark-enable), xdist."""
    session = benchmark_session(config)
    return session is not None and not session.disabled


def run_json(config: pytest.Config) -> dict | None:
    """This run's JSON as pytest-benchmark builds it for --benchmark-json, raw rounds included, made
    through its own hooks; None when nothing was benchmarked."""
    session = benchmark_session(config)
    if session is None or not session.benchmarks:
        return None
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    return config.hook.pytest_benchmark_generate_json(
        config=config,
        benchmarks=session.benchmarks,
        include_data=True,
        machine_info=session.get_machine_info(),
        commit_info=commit_info,
    )
