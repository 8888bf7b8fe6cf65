"""Calibration of the latency gate on real CPU measurements: A/A false alarms and a 15% injected slowdown."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

from detbench.perf.stats import compare_samples
from detbench.perf.timing import Slowed, steady_state

pytestmark = pytest.mark.calibration

# Gate defaults (alpha 0.01, min_effect 0.10) are used throughout: these tests calibrate exactly them.
AA_POOL_BLOCKS = 10  # x 20 kept calls = 200 samples an arm
AA_DRAWS = 100
AA_SUBSET = 25
AA_MAX_FALSE_ALARMS = 1
SLOWDOWN = 0.15
SLOWDOWN_TRIALS = 10
SLOWDOWN_BLOCKS = 4  # x 10 kept calls = 40 samples a side
SLOWDOWN_MIN_DETECTED = 9


@pytest.fixture(scope="module")
def workload(workbench, dataset, model_info) -> Callable[[], object]:
    """The one callable under calibration: the baseline's ONNX Runtime artifact (1 thread, ~4-5 ms)
    on one preprocessed val image, i.e. exactly what the latency benchmarks and budgets time."""
    from detbench.runtimes.preprocess import load_image, preprocess

    backend = workbench.load("onnxruntime")
    x, _ = preprocess([load_image(dataset.images("val")[0])], model_info.imgsz)
    return lambda: backend.run(x)


@pytest.fixture(scope="module")
def aa_pool(workload: Callable[[], object]) -> tuple[np.ndarray, np.ndarray]:
    """Real per-call seconds of the workload in alternated blocks with itself: two arms of 200 calls."""
    a, b = steady_state([workload, workload], blocks=AA_POOL_BLOCKS, block_calls=25, discard=5)
    return a, b


def test_aa_resampled_false_alarm_rate(aa_pool, record_property):
    """Disjoint random subsets of one callable's real samples raise "regression" at most once in 100."""
    pooled = np.concatenate(aa_pool)
    rng = np.random.default_rng(12345)
    statuses = []
    for i in range(AA_DRAWS):
        perm = rng.permutation(pooled.size)
        base, cand = pooled[perm[:AA_SUBSET]], pooled[perm[AA_SUBSET : 2 * AA_SUBSET]]
        statuses.append(compare_samples(f"aa{i}", base, cand, seed=i).status)
    false_alarms = statuses.count("regression")
    p50, p90, p99 = np.percentile(pooled, [50, 90, 99]) * 1e3
    record_property("aa_false_alarms", false_alarms)
    record_property("aa_false_improvements", statuses.count("improvement"))
    record_property("workload_ms_p50_p90_p99", f"{p50:.3f}/{p90:.3f}/{p99:.3f}")
    record_property("loadavg_1min", os.getloadavg()[0])
    print(
        f"A/A: {false_alarms}/{AA_DRAWS} false regressions, {statuses.count('improvement')} false"
        f" improvements (workload p50/p90/p99 {p50:.3f}/{p90:.3f}/{p99:.3f} ms,"
        f" load {os.getloadavg()[0]:.1f})"
    )
    assert false_alarms <= AA_MAX_FALSE_ALARMS


def test_aa_blocked_arms_agree(aa_pool, record_property):
    """The two block-alternated arms of the same callable are not a regression, and differ by under 10%."""
    v = compare_samples("aa-arms", *aa_pool)
    record_property("aa_arms_change", round(v.change, 4))
    print(f"A/A arms: change {v.change:+.2%}, CI [{v.ci_low:+.2%}, {v.ci_high:+.2%}], {v.status}")
    assert v.status != "regression"
    assert abs(v.change) < 0.10


def test_injected_slowdown_detected(workload, record_property):
    """A 15% CPU-burning slowdown, timed in alternated blocks in 10 fresh trials, is flagged in 9 or more."""
    slowed = Slowed(workload, SLOWDOWN)
    verdicts = []
    for i in range(SLOWDOWN_TRIALS):
        a, b = steady_state([workload, slowed], blocks=SLOWDOWN_BLOCKS, block_calls=15, discard=5)
        verdicts.append(compare_samples(f"slow{i}", a, b, seed=i))
    detected = sum(v.status == "regression" for v in verdicts)
    changes = ", ".join(f"{v.change:+.1%}" for v in verdicts)
    record_property("slowdown_detected", detected)
    record_property("slowdown_changes", changes)
    print(f"{SLOWDOWN:.0%} slowdown: detected {detected}/{SLOWDOWN_TRIALS} (measured changes {changes})")
    assert detected >= SLOWDOWN_MIN_DETECTED
