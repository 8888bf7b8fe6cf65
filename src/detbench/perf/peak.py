"""This machine's measured single-precision matmul peak: the yardstick for "achieved GFLOP/s".

A vendor's theoretical peak says nothing about a shared, throttled or virtualised core; a large
float32 GEMM timed in the same run, with the same thread count as the backends, is what the
backends could at best reach here. Two BLAS libraries are timed and the faster one counts: torch's
(MKL on x86) can take a slow path on AMD CPUs, where numpy's OpenBLAS does not, and vice versa.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

# numpy's BLAS reads its thread count from the environment once, at load: a child process is the
# only clean way to pin it without extra packages.
_NUMPY_PROBE = """
import json, sys, time
import numpy as np
n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
out = np.empty((n, n), dtype=np.float32)
np.matmul(a, b, out=out)
best = float("inf")
for _ in range(repeats):
    t = time.perf_counter()
    np.matmul(a, b, out=out)
    best = min(best, time.perf_counter() - t)
print(json.dumps({"best_s": best, "library": "numpy " + np.__version__ + " matmul"}))
"""


@dataclass(frozen=True)
class MatmulPeak:
    n: int  # square matrix size
    threads: int
    repeats: int
    best_s: float  # fastest timed multiplication of the winning library
    gflops_per_s: float  # 2 n^3 / best_s / 1e9
    library: str
    candidates: dict[str, float | None] = field(default_factory=dict)  # library -> GFLOP/s; None: failed

    def to_dict(self) -> dict:
        return asdict(self)


def _gflops(n: int, seconds: float) -> float:
    return 2 * n**3 / seconds / 1e9


def torch_matmul(n: int, threads: int, repeats: int) -> tuple[float, str]:
    """Best seconds of ``repeats`` float32 ``n x n`` torch matmuls on ``threads`` threads.

    torch's thread count is process-wide, so it is restored afterwards.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=gen, dtype=torch.float32)
    b = torch.rand(n, n, generator=gen, dtype=torch.float32)
    out = torch.empty(n, n, dtype=torch.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.mm(a, b, out=out)  # warm-up: page in the buffers, let the BLAS pick its kernel
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return best, f"torch {torch.__version__} mm"


def numpy_matmul(n: int, threads: int, repeats: int, timeout: float = 300) -> tuple[float, str]:
    """The same with numpy's BLAS, in a child process whose BLAS is pinned to ``threads`` threads."""
    env = {
        **os.environ,
        **{k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    done = subprocess.run(
        [sys.executable, "-c", _NUMPY_PROBE, str(n), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    return float(doc["best_s"]), str(doc["library"])


def matmul_peak(n: int = 2048, *, threads: int = 1, repeats: int = 5) -> MatmulPeak:
    """The faster of torch's and numpy's float32 matmul; each the best of ``repeats`` runs.

    The best, not the median: the peak is what the core can do when nothing else interferes.
    A library that fails (e.g. the child process cannot start) is recorded as None and skipped.
    """
    if n < 1 or threads < 1 or repeats < 1:
        raise ValueError(
            f"n, threads and repeats must be positive, got n={n}, threads={threads}, repeats={repeats}"
        )
    results: list[tuple[float, str]] = [torch_matmul(n, threads, repeats)]
    candidates: dict[str, float | None] = {results[0][1]: _gflops(n, results[0][0])}
    try:
        results.append(numpy_matmul(n, threads, repeats))
        candidates[results[-1][1]] = _gflops(n, results[-1][0])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError):
        candidates["numpy matmul"] = None
    best, library = min(results)
    return MatmulPeak(
        n=n,
        threads=threads,
        repeats=repeats,
        best_s=best,
        gflops_per_s=_gflops(n, best),
        library=library,
        candidates=candidates,
    )
