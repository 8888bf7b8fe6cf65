"""scripts/pytest_phases.py: the tox envs' parallel-then-serial split of one selection."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pytest_phases.py"
phases_mod = runpy.run_path(str(SCRIPT))


def test_default_selection_splits_timing_from_the_rest() -> None:
    """Without arguments: everything but calibration and the family matrix, timing tests serially
    after the rest."""
    parallel, serial = phases_mod["phases"]([], "auto")
    assert parallel == ["-n", "auto", "-m", "(not calibration and not families) and not timing"]
    assert serial == ["-p", "no:xdist", "-m", "(not calibration and not families) and timing"]


@pytest.mark.parametrize("marker", [["-m", "goldens or slow"], ["-mgoldens or slow"]])
def test_callers_marker_is_combined_and_other_arguments_go_to_both(marker: list[str]) -> None:
    """A caller's -m narrows both phases; -k, -x and paths reach both unchanged."""
    parallel, serial = phases_mod["phases"](["-k", "x", *marker, "tests/a.py"], "2")
    assert parallel == ["-n", "2", "-m", "(goldens or slow) and not timing", "-k", "x", "tests/a.py"]
    assert serial == ["-p", "no:xdist", "-m", "(goldens or slow) and timing", "-k", "x", "tests/a.py"]


def _run(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_t.py").write_text(body)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    timing: t\n    calibration: c\n")
    return subprocess.run(
        [sys.executable, str(SCRIPT), "-p", "no:detbench", "-p", "no:cacheprovider", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"DETBENCH_TEST_WORKERS": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


TWO = "import pytest\n\ndef test_plain():\n    pass\n\n@pytest.mark.timing\ndef test_timed():\n    pass\n"


def test_both_phases_run_and_a_failure_in_either_fails(tmp_path: Path) -> None:
    """The plain test runs under xdist, the timing one alone; a failing timing test fails the run."""
    ok = _run(tmp_path, TWO)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 worker [1 item]" in ok.stdout, ok.stdout  # the plain test, under xdist
    assert "1 deselected / 1 selected" in ok.stdout, ok.stdout  # the timing test, serially
    assert ok.stdout.count(" 1 passed") == 2, ok.stdout
    broken = _run(tmp_path, TWO.replace("def test_timed():\n    pass", "def test_timed():\n    assert 0"))
    assert broken.returncode == 1, broken.stdout


def test_a_phase_that_selects_nothing_is_not_a_failure_but_both_empty_is(tmp_path: Path) -> None:
    """-k matching only the plain test passes; -k matching nothing keeps pytest's 'no tests' status."""
    assert _run(tmp_path, TWO, "-k", "plain").returncode == 0
    assert _run(tmp_path, TWO, "-k", "nothing_matches").returncode == 5


def test_no_timing_runs_the_parallel_phase_only(tmp_path: Path) -> None:
    """--no-timing: the plain test runs, the timing one (even a failing one) is not collected."""
    body = TWO.replace("def test_timed():\n    pass", "def test_timed():\n    assert 0")
    out = _run(tmp_path, body, "--no-timing")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 worker [1 item]" in out.stdout and out.stdout.count(" 1 passed") == 1, out.stdout
    assert "no:xdist" not in out.stdout


def test_no_timing_leaves_out_the_benchmarks_unless_named(tmp_path: Path) -> None:
    """--no-timing (the older torch's env) does not collect tests/benchmarks; naming it runs it."""
    bench = tmp_path / "tests" / "benchmarks"
    bench.mkdir(parents=True)
    (bench / "test_b.py").write_text("def test_bench():\n    assert 0\n")
    assert _run(tmp_path, TWO, "--no-timing").returncode == 0
    named = _run(tmp_path, TWO, "--no-timing", "tests/benchmarks")
    assert named.returncode == 1 and "1 failed" in named.stdout, named.stdout
    assert _run(tmp_path, TWO).returncode == 1  # with timing, the benchmarks' smoke run stays


def test_timed_benchmarks_run_in_one_serial_phase() -> None:
    """--benchmark-enable (saving runs, README): the whole selection serially, never under xdist."""
    assert phases_mod["phases"](["tests/benchmarks", "--benchmark-enable"], "auto") == [
        ["-p", "no:xdist", "-m", "not calibration and not families", "tests/benchmarks", "--benchmark-enable"]
    ]
