"""Cold start: load + first inference of one backend in a fresh process, and that process's peak RSS.

What a serverless function or a batch job pays before its first answer. It must run in a new
interpreter: in the measuring process every runtime's libraries, kernels and allocator pools are
already warm. The child imports detbench (and so torch, which the checkpoint code needs) before
the clock starts; ``import_rss_mb`` is its RSS at that point, so ``peak_rss_mb - import_rss_mb``
is what loading and the first call added.

Run as ``python -m detbench.perf.coldstart BACKEND ARTIFACT --threads N --imgsz S``; prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ColdStart:
    first_call_ms: float  # load + first inference, imports excluded
    load_ms: float
    import_rss_mb: float  # resident set after imports, before loading
    peak_rss_mb: float  # the child's peak resident set (VmHWM)


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_mb() -> float:
    """This process's high-water resident set (VmHWM). Not ``ru_maxrss``: Linux carries that over
    from the parent across fork + exec, so every child would report the (larger) parent's peak."""
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child(argv: Sequence[str]) -> dict:
    p = argparse.ArgumentParser(prog="detbench.perf.coldstart")
    p.add_argument("backend")
    p.add_argument("artifact", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--imgsz", type=int, required=True)
    args = p.parse_args(argv)

    import numpy as np

    from detbench.runtimes.backends import BackendSettings, PyTorchBackend, create

    x = np.zeros((1, 3, args.imgsz, args.imgsz), dtype=np.float32)
    import_rss = _rss_mb()
    start = time.perf_counter()
    backend = create(args.backend, BackendSettings(threads=args.threads))
    backend.load(args.artifact)
    if isinstance(backend, PyTorchBackend):
        backend.set_imgsz(args.imgsz)
    loaded = time.perf_counter()
    backend.run(x)
    done = time.perf_counter()
    return {
        "first_call_ms": (done - start) * 1e3,
        "load_ms": (loaded - start) * 1e3,
        "import_rss_mb": import_rss,
        "peak_rss_mb": _peak_rss_mb(),
    }


def cold_start(backend: str, artifact: Path, *, threads: int, imgsz: int, timeout: float = 300) -> ColdStart:
    """Measure ``backend`` on ``artifact`` in a fresh interpreter; raises RuntimeError with the
    child's last stderr lines if it fails."""
    cmd = [sys.executable, "-m", "detbench.perf.coldstart", backend, str(artifact)]
    cmd += ["--threads", str(threads), "--imgsz", str(imgsz)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"cold start of {backend} failed (exit {done.returncode}): {tail}")
    return ColdStart(**json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    from detbench.paths import configure_environment

    configure_environment()  # an entry point like the CLI: ultralytics offline, its dirs in our cache
    print(json.dumps(_child(sys.argv[1:])))
