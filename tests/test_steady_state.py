"""The timing core measures a deployment's steady state: blocked medians agree with each backend alone."""

from __future__ import annotations

import os

import pytest

from detbench.perf.timing import BLOCK_CALLS, DISCARD, blocked_vs_alone

pytestmark = pytest.mark.calibration

USABLE_CPUS = len(os.sched_getaffinity(0))
THREADS = sorted({1, USABLE_CPUS})
CHECKED = ("onnxruntime", "openvino")  # the runtimes whose own thread pools spin between calls
NEIGHBOURS = ("pytorch",)  # timed in the same alternation (its OpenMP pool spins too), not checked
MAX_DIFF = 0.05
# The block shape under test: the timing core's defaults (25 calls a block, the first 5 dropped);
# 10 rounds of 2 blocks a callable keep 400 calls each, blocked and alone.
PLAN = {"rounds": 10, "blocks": 2, "block_calls": BLOCK_CALLS, "discard": DISCARD}


@pytest.fixture(scope="module")
def x(dataset, model_info):
    """One preprocessed val image, batch 1: what the latency report and budgets time."""
    from detbench.runtimes.preprocess import preprocess

    return preprocess(dataset.images("val")[:1], model_info.imgsz)[0]


@pytest.mark.parametrize("threads", THREADS, ids=[f"{t}thread" for t in THREADS])
def test_blocked_median_agrees_with_alone(threads, load_at_threads, x, record_property):
    """Each runtime's median in alternated blocks beside the others is within 5 % of it timed alone
    (median over rounds of the paired ratio)."""
    if threads > 1 and USABLE_CPUS == 1:
        pytest.skip("one usable core: the all-cores case is the 1-thread case")
    names = (*CHECKED, *NEIGHBOURS)
    backends = [load_at_threads(n, threads) for n in names]
    result = blocked_vs_alone([lambda b=b: b.run(x) for b in backends], **PLAN)
    lines = []
    for name, r in zip(names, result):
        record_property(
            f"{name}_{threads}t_alone_blocked_ms_diff",
            f"{r.alone_p50_s * 1e3:.3f}/{r.blocked_p50_s * 1e3:.3f}/{r.diff:+.4f}",
        )
        lines.append(
            f"{name:<12} {threads} thread(s): alone p50 {r.alone_p50_s * 1e3:.3f} ms, "
            f"blocked p50 {r.blocked_p50_s * 1e3:.3f} ms, diff {r.diff:+.1%} (median of "
            f"{len(r.round_ratios)} rounds: {' '.join(f'{q - 1:+.1%}' for q in r.round_ratios)})"
        )
    print("\n" + "\n".join(lines))
    off = [line for name, r, line in zip(names, result, lines) if name in CHECKED and abs(r.diff) > MAX_DIFF]
    assert not off, f"blocked median differs from alone by more than {MAX_DIFF:.0%}:\n" + "\n".join(off)
