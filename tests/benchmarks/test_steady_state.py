"""Block-alternated vs alone medians of the runtimes (yolov8n, 128 px, batch 1) at 1 and all cores."""

from __future__ import annotations

import os

import pytest

from detbench.perf.timing import BLOCK_CALLS, DISCARD, blocked_vs_alone

USABLE_CPUS = len(os.sched_getaffinity(0))
THREADS = sorted({1, USABLE_CPUS})
NAMES = ("onnxruntime", "openvino", "pytorch")

pytestmark = [
    pytest.mark.benchmark(group="steady-state-agreement-yolov8n-128"),
    pytest.mark.parametrize("threads", THREADS, ids=[f"{t}thread" for t in THREADS]),
]


def test_steady_state_agreement_yolov8n_128(benchmark, threads, load_at_threads, make_input, model_info):
    """One blocked-vs-alone run; alone/blocked p50 and the paired diff per runtime go to extra_info."""
    backends = [load_at_threads(n, threads) for n in NAMES]
    x = make_input(model_info.imgsz)
    # Timing off (the default smoke run): two rounds only; the calibration test runs the full check.
    rounds = 2 if benchmark.disabled else 10
    plan = {"rounds": rounds, "blocks": 2, "block_calls": BLOCK_CALLS, "discard": DISCARD}
    fns = [lambda b=b: b.run(x) for b in backends]
    result = benchmark.pedantic(blocked_vs_alone, args=(fns,), kwargs=plan, rounds=1, iterations=1)
    benchmark.extra_info.update({"threads": threads, "plan": plan})
    for name, r in zip(NAMES, result):
        benchmark.extra_info[name] = {
            "alone_p50_ms": r.alone_p50_s * 1e3,
            "blocked_p50_ms": r.blocked_p50_s * 1e3,
            "diff": r.diff,
        }
    assert len(result) == len(NAMES) and all(r.alone_p50_s > 0 and r.blocked_p50_s > 0 for r in result)
