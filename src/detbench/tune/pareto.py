"""Pareto front over (latency, accuracy, size) and the recommendation rule."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# (key, direction): -1 lower is better, +1 higher is better.
OBJECTIVES: tuple[tuple[str, int], ...] = (("p50_ms", -1), ("mAP50-95", +1), ("size_mb", -1))


def _value(c: Mapping[str, Any], key: str, sign: int) -> float:
    """The objective as a cost (lower is better); a missing value is the worst possible."""
    v = c.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return math.inf
    return -sign * float(v)


def dominates(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """``a`` is no worse than ``b`` in every objective and strictly better in at least one."""
    ca = [_value(a, k, s) for k, s in OBJECTIVES]
    cb = [_value(b, k, s) for k, s in OBJECTIVES]
    return all(x <= y for x, y in zip(ca, cb)) and any(x < y for x, y in zip(ca, cb))


def pareto_front(candidates: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the verified, timed candidates no other such candidate dominates."""
    pool = [i for i, c in enumerate(candidates) if c.get("verified") and c.get("p50_ms") is not None]
    return [i for i in pool if not any(dominates(candidates[j], candidates[i]) for j in pool if j != i)]


def recommend(candidates: Sequence[Mapping[str, Any]]) -> int | None:
    """The fastest (lowest p50) verified candidate; ties go to the smaller artifact, then fewer
    threads. None when nothing verified was timed. An unverified candidate is never chosen,
    however fast: it does not compute the same thing."""
    pool = [i for i, c in enumerate(candidates) if c.get("verified") and c.get("p50_ms") is not None]
    if not pool:
        return None
    return min(
        pool,
        key=lambda i: (
            candidates[i]["p50_ms"],
            _value(candidates[i], "size_mb", -1),
            candidates[i].get("threads") or 0,
        ),
    )
