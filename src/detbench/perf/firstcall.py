"""Cold start of a backend: load + first inference in a fresh process, and that process's peak RSS.

Serverless and batch users pay this on every start, so it is measured where nothing is warm: a new
``python -m detbench.perf.firstcall`` process per backend (the OS page cache may still hold the
artifact, as it would on a warm host). The clock starts after Python and detbench (which imports
torch) are imported and stops when the first output is back: the runtime's own import, artifact
load, graph compile and first inference. Peak RSS (VmHWM) is read after a few more calls, beside
the RSS before loading, so the backend's own share is visible.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

TIMEOUT_S = 600  # a first OpenVINO compile of a big model can take a while
STEADY_CALLS = 5  # after the first call, so the peak includes the runtime's steady buffers


@dataclass(frozen=True)
class FirstCall:
    backend: str
    threads: int
    first_call_ms: float  # runtime import + load + first inference
    peak_rss_mb: float  # the child's peak resident set after first + STEADY_CALLS calls
    base_rss_mb: float  # the child's resident set before loading (Python + detbench + numpy)

    def to_dict(self) -> dict:
        return asdict(self)


def _peak_rss_mb() -> float:
    """This process's peak resident set. /proc's VmHWM belongs to the address space exec made;
    ``ru_maxrss`` is the fallback off Linux, and on Linux would start at the parent's peak (the
    forking report process holds a gigabyte), so it is not the first choice."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def first_call(
    backend: str, artifact: Path, *, threads: int, imgsz: int, python: str = sys.executable
) -> FirstCall:
    """Run the child for one backend and return what it measured; raises with its stderr on failure."""
    cmd = [python, "-m", "detbench.perf.firstcall", backend, str(artifact), str(threads), str(imgsz)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"first-call child for {backend} exited {done.returncode}: {tail[0]}")
    return FirstCall(**json.loads(done.stdout.strip().splitlines()[-1]))


def _measure_here(backend_name: str, artifact: Path, *, threads: int, imgsz: int) -> FirstCall:
    """The child's measurement, in this process (which must be fresh for the numbers to mean anything)."""
    import numpy as np

    # detbench's backend module imports torch for checkpoint checks, which an ORT or OpenVINO
    # deployment would not: imported before the clock and the base RSS, so neither counts it.
    from detbench.runtimes.backends import BackendSettings, PyTorchBackend, create

    base = _peak_rss_mb()
    start = time.perf_counter()
    backend = create(backend_name, BackendSettings(threads=threads))
    backend.load(artifact)
    if isinstance(backend, PyTorchBackend):
        backend.set_imgsz(imgsz)
    assert backend.spec is not None
    x = np.zeros((backend.spec.batch or 1, 3, imgsz, imgsz), dtype=np.float32)
    backend.run(x)
    first = time.perf_counter() - start
    for _ in range(STEADY_CALLS):
        backend.run(x)
    return FirstCall(backend_name, threads, first * 1e3, _peak_rss_mb(), base)


def _child(argv: Sequence[str]) -> int:
    """The child's entry: the four values ``first_call`` passes, in its order; one JSON line out.
    A private protocol between this module's two halves, so positional and parsed by hand."""
    if len(argv) != 4:
        raise SystemExit("usage: python -m detbench.perf.firstcall BACKEND ARTIFACT THREADS IMGSZ")
    backend, artifact, threads, imgsz = argv
    doc = _measure_here(backend, Path(artifact), threads=int(threads), imgsz=int(imgsz))
    print(json.dumps(doc.to_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
