"""Helpers for tests that kill or race child processes (interrupted writes, concurrent exports)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


def pytest_child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child pytest session, plus ``extra``, without an xdist
    worker's PYTEST_XDIST_* variables (seeing them, the child's pytest-benchmark disables its
    benchmarks)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}, **extra}


def spawn_python(cache: Path, code: str, *args: object) -> subprocess.Popen:
    """Run ``code`` in a child of this interpreter (so it imports detbench like a user would), with
    its own DETBENCH_CACHE and pipes for stdout/stderr; ``_support`` is importable there too."""
    tests_dir = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "DETBENCH_CACHE": str(cache), "PYTHONPATH": path}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sigkill(proc: subprocess.Popen) -> None:
    """Kill the child the hard way (no cleanup handlers run) and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until the child creates ``marker``; fail with its stderr if it exits first."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"child exited ({proc.returncode}) before {marker.name}: {(err or '')[-2000:]}")
        if time.monotonic() > deadline:
            sigkill(proc)
            pytest.fail(f"child did not reach {marker.name} within {timeout} s")
        time.sleep(0.01)
