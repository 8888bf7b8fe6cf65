"""Helpers for tests that kill or race child processes (interrupted writes, concurrent exports)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest


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
