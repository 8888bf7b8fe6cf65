"""Cross-environment interleaved A/B: worker processes driven round by round over pipes."""

from __future__ import annotations

import sys

import pytest

from detbench.perf.abenv import ab_environments

pytestmark = pytest.mark.calibration

WORKER = ["--backend", "onnxruntime", "--threads", "1"]


def test_same_environment_twice_is_no_regression() -> None:
    """A/A across two processes of one environment: the gate raises no alarm."""
    verdict, a, b = ab_environments(
        sys.executable, sys.executable, WORKER, blocks=10, block_calls=5, warmup=3
    )
    assert verdict.status != "regression"
    assert a["versions"] == b["versions"] and a["backend"]["backend"] == "onnxruntime"
    assert verdict.n_base == verdict.n_cand == 10


def test_slowed_environment_is_flagged() -> None:
    """B burning 50% extra per call is reported as a regression of about that size."""
    verdict, _, _ = ab_environments(
        sys.executable, sys.executable, WORKER, blocks=10, block_calls=5, warmup=3, slowdown_b=0.5
    )
    assert verdict.status == "regression"
    assert 0.3 < verdict.change < 0.8


def test_broken_worker_fails_loudly() -> None:
    """A worker that cannot start (unknown backend) raises instead of yielding empty samples."""
    with pytest.raises(RuntimeError, match="exited with status"):
        ab_environments(
            sys.executable, sys.executable, ["--backend", "nope"], blocks=2, block_calls=1, warmup=1
        )
