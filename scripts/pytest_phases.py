"""Run pytest in two phases: correctness on every core, then the `timing` tests alone.

    python scripts/pytest_phases.py [PYTEST ARGS]     # what each tox torch env runs
    python scripts/pytest_phases.py --no-timing [...]  # phase 1 only (the older torch's env)

Phase 1 runs the selection with pytest-xdist (``-n auto``) minus the `timing` tests; phase 2 runs
the `timing` tests of the same selection serially, with nothing beside them, since their
neighbours would be what they measure (README "Scale-out"). Without arguments the selection is
``-m "not calibration and not families"`` (both take minutes and run in their own tox envs). A
``-m`` given by the caller is combined with each phase's own marker; every other argument goes to
both phases. A phase that selects nothing (pytest's exit status 5) is
not a failure (``-k goldens`` has no timing test) unless both select nothing. The exit status is
the worse of the two. With ``--benchmark-enable`` every benchmark times, so the whole selection runs
serially in one phase. ``--no-timing`` runs phase 1 only: tox's older-torch env checks correctness
there, while latency verdicts run once per CI on the current torch and the two releases' latency is
compared side by side by ``detbench ab --envs`` (.ci/run); it also leaves out ``tests/benchmarks``
(untimed there, they only export and call once) unless an argument names it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

NO_TESTS = 5  # pytest.ExitCode.NO_TESTS_COLLECTED
# The gate's calibration and the family matrix take minutes each: tox -e calibration / -e families.
DEFAULT_MARKERS = "not calibration and not families"
BENCHMARKS = "tests/benchmarks"  # left out by --no-timing unless an argument names it


def split_marker(args: Sequence[str]) -> tuple[str, list[str]]:
    """The caller's ``-m`` expression (default ``not calibration and not families``) and the other
    arguments."""
    expr, rest = DEFAULT_MARKERS, []
    it = iter(args)
    for arg in it:
        if arg == "-m":
            expr = next(it, expr)
        elif arg.startswith("-m") and len(arg) > 2:
            expr = arg[2:]
        else:
            rest.append(arg)
    return expr, rest


def phases(args: Sequence[str], workers: str) -> list[list[str]]:
    """The two pytest command lines (arguments after ``pytest``); one serial command when the caller
    enables benchmark timing (pytest-benchmark disables its benchmarks under xdist)."""
    expr, rest = split_marker(args)
    if "--benchmark-enable" in rest:
        return [["-p", "no:xdist", "-m", expr, *rest]]
    return [
        ["-n", workers, "-m", f"({expr}) and not timing", *rest],
        ["-p", "no:xdist", "-m", f"({expr}) and timing", *rest],
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    timing = "--no-timing" not in args
    args = [a for a in args if a != "--no-timing"]
    workers = os.environ.get("DETBENCH_TEST_WORKERS", "auto")
    codes = []
    cmds = phases(args, workers)
    if not timing and len(cmds) == 2 and not any(BENCHMARKS in a for a in args):
        # The benchmarks run untimed here (one call each, at 640 px too): an instrument for the current
        # torch's env, not a correctness check the older torch's env needs. Named, they still run.
        cmds[0].append(f"--ignore={BENCHMARKS}")
    for cmd in cmds if len(cmds) == 1 else cmds[: 2 if timing else 1]:
        print(f"pytest {' '.join(cmd)}", flush=True)
        codes.append(subprocess.call([sys.executable, "-m", "pytest", *cmd]))
    if all(code == NO_TESTS for code in codes):
        return NO_TESTS
    return max(0 if code == NO_TESTS else code for code in codes)


if __name__ == "__main__":
    sys.exit(main())
