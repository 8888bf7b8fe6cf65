"""The configuration space ``detbench tune`` searches: registered backends x threads x batch layout.

Every point is a registered backend (``runtimes.backends.REGISTRY``) plus ``BackendSettings`` and
the export's batch layout; nothing here is a new code path, so the suite's equivalence, accuracy,
budget and benchmark tests already cover whatever the search recommends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from detbench.perf.machine import usable_cpus
from detbench.runtimes.backends import REGISTRY


@dataclass(frozen=True)
class Point:
    """One configuration: ``backend`` run with ``threads`` threads on batches of ``batch``, from an
    artifact exported with a dynamic or a static (fixed at ``batch``) batch dimension."""

    backend: str
    threads: int
    batch: int = 1
    dynamic_batch: bool = True

    @property
    def label(self) -> str:
        layout = "" if self.dynamic_batch else " static"
        return f"{self.backend} {self.threads}t{layout}"


def batch_layout_matters(backend: str) -> bool:
    """A static batch is a different artifact only for formats exported through ONNX (ONNX, its
    INT8 and OpenVINO IR): the checkpoint and a traced TorchScript module take any batch."""
    fmt = REGISTRY[backend].artifact_format
    return fmt is not None and not fmt.startswith("torchscript")


def thread_counts(cores: int, *, quick: bool = False) -> list[int]:
    """1 .. ``cores``; with ``quick`` only the two ends (1 and all usable cores)."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    return sorted({1, cores}) if quick else list(range(1, cores + 1))


def configuration_space(
    backends: Iterable[str] | None = None,
    threads: Sequence[int] | None = None,
    *,
    static_batch: bool = True,
    fixed: Iterable[str] = (),
) -> list[Point]:
    """Every point of backends x threads at batch 1, plus a static-batch twin for each backend
    whose layout matters (``static_batch``). Backends in ``fixed`` (a user's own artifact) keep
    the one layout they were exported with, so get no twin."""
    names = list(REGISTRY if backends is None else backends)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(REGISTRY)}")
    counts = list(threads) if threads is not None else thread_counts(usable_cpus())
    fixed = set(fixed)
    points = []
    for name in names:
        layouts = [True]
        if static_batch and batch_layout_matters(name) and name not in fixed:
            layouts.append(False)
        points += [Point(name, t, 1, dyn) for dyn in layouts for t in counts]
    return points
