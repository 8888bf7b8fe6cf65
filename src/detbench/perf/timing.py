"""Wall-clock sampling of zero-argument callables, including interleaved A/B runs and injected slowdowns."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import numpy as np


def _check_rounds(rounds: int, warmup: int) -> None:
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")


def _time_call(fn: Callable[[], object]) -> int:
    start = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - start


def measure(fn: Callable[[], object], *, rounds: int = 30, warmup: int = 3) -> np.ndarray:
    """Seconds per call for ``rounds`` calls of ``fn`` after ``warmup`` untimed calls."""
    _check_rounds(rounds, warmup)
    for _ in range(warmup):
        fn()
    ns = np.fromiter((_time_call(fn) for _ in range(rounds)), dtype=np.int64, count=rounds)
    return ns.astype(np.float64) / 1e9


def interleaved(
    fns: Sequence[Callable[[], object]], *, rounds: int = 30, warmup: int = 3
) -> list[np.ndarray]:
    """Seconds per call for each of ``fns``, one call of each per round.

    Interleaving makes slow machine drift (thermal, a neighbour's job) hit every callable alike, and
    reversing the order every other round (A B, B A, ...) cancels "who ran right after whom" cache
    effects. Returns one array per callable, in the order given.
    """
    _check_rounds(rounds, warmup)
    if not fns:
        raise ValueError("interleaved needs at least one callable")
    order = list(range(len(fns)))
    for _ in range(warmup):
        for i in order:
            fns[i]()
    ns = np.empty((len(fns), rounds), dtype=np.int64)
    for r in range(rounds):
        for i in order if r % 2 == 0 else reversed(order):
            ns[i, r] = _time_call(fns[i])
    return [row.astype(np.float64) / 1e9 for row in ns]


def steady_state(
    fns: Sequence[Callable[[], object]], *, blocks: int = 12, block_calls: int = 25, discard: int = 3
) -> list[np.ndarray]:
    """Seconds per call of each of ``fns`` as a ``(blocks, block_calls)`` array, blocks alternated.

    Each block is ``discard`` untimed calls (the callable's caches and branch predictors warm up
    again after the switch) and then ``block_calls`` timed consecutive calls of one callable. Blocks
    go A B, B A, A B, ... (reversed every other round), so block ``i`` of every callable ran side by
    side with block ``i`` of the others: their per-block medians are pairs (``stats.compare_paired``).
    """
    if blocks < 1 or block_calls < 1:
        raise ValueError(f"blocks and block_calls must be >= 1, got {blocks} and {block_calls}")
    if discard < 0:
        raise ValueError(f"discard must be >= 0, got {discard}")
    if not fns:
        raise ValueError("steady_state needs at least one callable")
    order = list(range(len(fns)))
    ns = np.empty((len(fns), blocks, block_calls), dtype=np.int64)
    for b in range(blocks):
        for i in order if b % 2 == 0 else reversed(order):
            fn = fns[i]
            for _ in range(discard):
                fn()
            for c in range(block_calls):
                ns[i, b, c] = _time_call(fn)
    return [row.astype(np.float64) / 1e9 for row in ns]


class Slowed:
    """``fn`` made ``1 + factor`` times slower: after each call, busy-wait ``factor`` x that call's time.

    It burns CPU rather than sleeping so the slowdown competes for the core like real extra work
    would (a sleep frees the core and can even make the next call faster).
    """

    def __init__(self, fn: Callable[..., object], factor: float) -> None:
        if not factor >= 0:
            raise ValueError(f"factor must be >= 0, got {factor}")
        self.fn = fn
        self.factor = float(factor)
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args: object, **kwargs: object) -> object:
        start = time.perf_counter_ns()
        result = self.fn(*args, **kwargs)
        end = time.perf_counter_ns()
        deadline = end + int((end - start) * self.factor)
        while time.perf_counter_ns() < deadline:
            pass
        return result

    def __repr__(self) -> str:
        return f"Slowed({self.fn!r}, factor={self.factor:g})"
