"""Cross-environment A/B: worker processes driven block by block over pipes."""

from __future__ import annotations

import sys

import pytest

from detbench.perf.abenv import WorkerSettings, ab_environments
from detbench.perf.timing import BlockPlan

pytestmark = pytest.mark.calibration

WORKER = WorkerSettings(backend="onnxruntime", threads=1)
PLAN = BlockPlan(blocks=8, block_calls=8, discard=4)  # 8 paired blocks of 4 kept calls a side


def test_same_environment_twice_is_no_regression() -> None:
    """A/A across two processes of one environment: the gate raises no alarm."""
    verdict, a, b = ab_environments(sys.executable, sys.executable, WORKER, plan=PLAN)
    assert verdict.status != "regression"
    assert a["versions"] == b["versions"] and a["backend"]["backend"] == "onnxruntime"
    assert verdict.n_base == verdict.n_cand == 8 and verdict.paired  # block medians


def test_slowed_environment_is_flagged() -> None:
    """B burning 50% extra per call is reported as a regression of about that size."""
    verdict, _, _ = ab_environments(sys.executable, sys.executable, WORKER, plan=PLAN, slowdown_b=0.5)
    assert verdict.status == "regression"
    assert 0.3 < verdict.change < 0.8


def test_broken_worker_fails_loudly() -> None:
    """A worker that cannot start (unknown backend) raises instead of yielding empty samples."""
    with pytest.raises(RuntimeError, match="exited with status"):
        ab_environments(sys.executable, sys.executable, WorkerSettings(backend="nope"), plan=PLAN)
