"""The per-image pipeline timed stage by stage: decode, preprocess, inference, postprocess, one image
at a time as a deployment runs them, at steady state.

The pipeline is ``runtimes.pipeline.StageCalls``, the three host stages around the backend call, so
any registered decode, preprocess or postprocess variant can be timed (``runtimes.pipeline.stage_calls``
builds one from variant names, by default each stage's reference).

``pipeline_stages`` times every backend's pipeline the way the timing core times a call
(``perf.timing``): a first pass over the images, kept apart as ``cold`` (file and pipeline caches,
the runtime right after other work), then ``StagePlan.warm_passes`` passes over the images in blocks
alternated between backends (A B C C B A ...), each block after an untimed settle
(``timing.settle``), so no backend's warm figures pay for the previous one's spinning threads. Two
pipelines on one backend are two entries of that run (one pipeline per entry), their blocks alternated
like two backends'.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from detbench.perf.timing import SETTLE_S, block_schedule, settle

if TYPE_CHECKING:
    from detbench.runtimes.pipeline import Run, StageCalls

STAGES = ("decode", "preprocess", "inference", "postprocess")
K = TypeVar("K", bound=Hashable)  # an entry of one run: a backend's name, or (backend, pipeline)


@dataclass(frozen=True)
class StagePlan:
    """How ``pipeline_stages`` runs: ``warm_passes`` timed passes over the images per backend, each
    pass one block after at least ``settle_calls`` untimed images lasting at least ``settle_s``."""

    warm_passes: int = 3
    settle_calls: int = 1
    settle_s: float = SETTLE_S

    REPORT: ClassVar[StagePlan]

    def __post_init__(self) -> None:
        if self.warm_passes < 1:
            raise ValueError(f"warm_passes must be >= 1, got {self.warm_passes}")
        if self.settle_calls < 0 or not self.settle_s >= 0:
            raise ValueError(
                f"settle_calls and settle_s must be >= 0, got {self.settle_calls}, {self.settle_s}"
            )


# The report's: 2 warm passes (A B ... B A: each backend once early, once late) over 16 val images and
# 6 photos. Both steps, 7 backends, on the 2-core VM loaded by a calibration: 21 s (3 passes: 33 s),
# where the old single cold pass over the val images took 3.7 s.
StagePlan.REPORT = StagePlan(warm_passes=2)


@dataclass(frozen=True)
class StageTimes:
    """One backend's seconds per image and stage (columns: ``STAGES``): the first pass, and the warm
    passes' images pass after pass."""

    cold: np.ndarray  # (images, 4)
    warm: np.ndarray  # (warm_passes * images, 4)

    def summary(self) -> dict[str, float]:
        """Medians in ms: each stage, decode + preprocess, end to end per image (warm), and the cold
        pass's end to end."""
        ms = self.warm * 1e3
        med = np.median(ms, axis=0)
        return {
            "decode_ms": float(med[0]),
            "preprocess_ms": float(med[1]),
            "decode_preprocess_ms": float(np.median(ms[:, 0] + ms[:, 1])),
            "inference_ms": float(med[2]),
            "postprocess_ms": float(med[3]),
            "end_to_end_ms": float(np.median(ms.sum(axis=1))),
            "cold_end_to_end_ms": float(np.median(self.cold.sum(axis=1)) * 1e3),
        }


def time_image(
    pipeline: StageCalls, run: Run, path: Path, clock: Callable[[], int] = time.perf_counter_ns
) -> tuple[np.ndarray, Any]:
    """Nanoseconds of each stage (``STAGES``) for one image through ``pipeline`` and ``run``, and the
    detections."""
    t0 = clock()
    image = pipeline.decode(path)
    t1 = clock()
    x, state = pipeline.preprocess(image)
    t2 = clock()
    raw = run(x)
    t3 = clock()
    det = pipeline.postprocess(raw, state)
    t4 = clock()
    return np.array([t1 - t0, t2 - t1, t3 - t2, t4 - t3], dtype=np.int64), det


def _pass(pipeline: StageCalls, run: Run, images: Sequence[Path], clock: Callable[[], int]) -> np.ndarray:
    return np.stack([time_image(pipeline, run, p, clock)[0] for p in images])


def pipeline_stages(
    runs: Mapping[K, Run],
    pipeline: StageCalls | Mapping[K, StageCalls],
    images: Sequence[Path],
    plan: StagePlan = StagePlan.REPORT,
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
    on_block: Callable[[K], object] | None = None,
) -> dict[K, StageTimes]:
    """Every entry's per-image stages: ``runs[k]`` through ``pipeline`` (one for all entries, or
    ``pipeline[k]`` each): a cold pass per entry (in order), then ``plan.warm_passes`` passes per entry
    in blocks alternated as ``timing.block_schedule`` orders them, each after an untimed settle on the
    first image. ``on_block(k)`` after each pass."""
    if not runs:
        raise ValueError("pipeline_stages needs at least one backend")
    if not images:
        raise ValueError("pipeline_stages needs at least one image")
    names = list(runs)
    calls = pipeline if isinstance(pipeline, Mapping) else dict.fromkeys(names, pipeline)
    missing = [n for n in names if n not in calls]
    if missing:
        raise ValueError(f"pipeline_stages: no pipeline for {missing}")
    cold = {}
    for n in names:
        cold[n] = _pass(calls[n], runs[n], images, clock)
        if on_block is not None:
            on_block(n)
    warm: dict[K, list[np.ndarray]] = {n: [] for n in names}
    for i in block_schedule(len(names), plan.warm_passes):
        n = names[i]
        settle(lambda p=calls[n], run=runs[n]: p(run, images[0]), plan.settle_calls, plan.settle_s)
        warm[n].append(_pass(calls[n], runs[n], images, clock))
        if on_block is not None:
            on_block(n)
    return {n: StageTimes(cold[n] / 1e9, np.concatenate(warm[n]) / 1e9) for n in names}
