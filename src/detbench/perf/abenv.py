"""A/B across two Python environments (e.g. two torch releases) in one job, in alternated blocks.

Two torch versions cannot share a process, so each environment runs a worker process
(``python -m detbench.perf.abenv worker SETTINGS_JSON``) that loads its backend and then waits on a
pipe. The coordinator asks A for a block of consecutive timed calls, then B, then B, then A (the timing
core's ``alternated_blocks``, as in ``steady_state``), so both see the same machine state at their
steady state; only one worker computes at any moment. Each worker times its block itself with the
core's ``time_block`` (untimed calls for ``discard`` and ``settle_s`` first, as in ``steady_state``),
so pipe latency is not in the samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from detbench.perf.stats import Verdict, compare_paired
from detbench.perf.timing import BlockPlan, alternated_blocks, block_medians, time_block

READY_TIMEOUT_S = 600  # a cold worker may export its artifacts first


@dataclass(frozen=True)
class WorkerSettings:
    """What each worker loads and runs; sent to it as one JSON argument (a private protocol)."""

    backend: str = "onnxruntime"
    weights: Path | None = None  # default: the committed baseline
    threads: int = 1
    slowdown: float = 0.0  # burn this fraction extra per call (calibration)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "weights": None if self.weights is None else str(self.weights)})

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        doc = json.loads(text)
        return cls(**{**doc, "weights": None if doc["weights"] is None else Path(doc["weights"])})


class _Worker:
    def __init__(self, python: str, settings: WorkerSettings) -> None:
        cmd = [python, "-m", "detbench.perf.abenv", "worker", settings.to_json()]
        self.python = python
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            self.info = self._read()
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=READY_TIMEOUT_S)
            raise RuntimeError(f"A/B worker {self.python} exited with status {code} (its stderr is above)")
        return json.loads(line)

    def run(self, calls: int, settle: int = 0, settle_s: float = 0.0) -> list[int]:
        """``calls`` timed calls after ``settle`` untimed ones lasting at least ``settle_s``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{calls} {settle} {settle_s}\n")
        self.proc.stdin.flush()
        return self._read()["ns"]

    def close(self) -> None:
        """Ask the worker to quit and close both pipes (communicate does both)."""
        try:
            self.proc.communicate("quit\n" if self.proc.poll() is None else None, timeout=60)
        except (BrokenPipeError, ValueError):  # already gone, or pipes already closed
            self.proc.wait(timeout=60)


def ab_environments(
    python_a: str,
    python_b: str,
    worker: WorkerSettings,
    *,
    plan: BlockPlan = BlockPlan.DEFAULT,
    slowdown_b: float = 0.0,
    name: str = "",
) -> tuple[Verdict, dict, dict]:
    """A/B of the same workload in two environments, in alternated blocks; returns the gate's verdict
    (A is the baseline) and each worker's self-description (versions, backend settings)."""
    a = _Worker(python_a, worker)
    try:
        b = _Worker(python_b, replace(worker, slowdown=slowdown_b))
    except BaseException:
        a.close()
        raise
    try:
        runs = [partial(w.run, plan.kept_per_block, plan.discard, plan.settle_s) for w in (a, b)]
        samples = alternated_blocks(runs, plan.blocks)
    finally:
        a.close()
        b.close()
    backend = a.info["backend"]["backend"]
    label = name or f"{backend}: torch {a.info['versions'].get('torch')} vs {b.info['versions'].get('torch')}"
    # Block k of A ran next to block k of B: their medians are pairs (paired statistics).
    verdict = compare_paired(
        label, block_medians(samples[0], plan.blocks), block_medians(samples[1], plan.blocks)
    )
    return verdict, a.info, b.info


def _worker(worker: WorkerSettings) -> int:
    # Our replies go to the real stdout; anything a library prints goes to stderr instead.
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    from detbench.data.datasets import load_dataset
    from detbench.data.images import load_image
    from detbench.model.baseline import synthetic_dataset
    from detbench.perf.timing import Slowed
    from detbench.runtimes.export import toolchain_versions
    from detbench.runtimes.preprocess import preprocess
    from detbench.runtimes.workbench import Workbench

    bench = Workbench.from_options(worker.weights, threads=worker.threads)
    backend = bench.load(worker.backend)
    x, _ = preprocess([load_image(load_dataset(synthetic_dataset()).images("val")[0])], bench.imgsz)
    call = Slowed(backend.run, worker.slowdown) if worker.slowdown else backend.run
    ready = {"ready": True, "versions": toolchain_versions(), "backend": backend.describe()}
    reply.write(json.dumps(ready) + "\n")
    reply.flush()
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        calls, n_settle, settle_s = cmd.split()
        ns = time_block(partial(call, x), int(calls), int(n_settle), float(settle_s))
        reply.write(json.dumps({"ns": ns.tolist()}) + "\n")
        reply.flush()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m detbench.perf.abenv worker SETTINGS_JSON")
    raise SystemExit(_worker(WorkerSettings.from_json(sys.argv[2])))
