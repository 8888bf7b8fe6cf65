"""Wall-clock sampling of zero-argument callables: the steady-state timing core (blocks of consecutive
calls per callable, blocks alternated A B C C B A ...), the named block plans every measurement runs
under (``BlockPlan``), plain consecutive sampling, and injected slowdowns."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

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


BLOCKS = 8
BLOCK_CALLS = 25
DISCARD = 5
# Untimed warm-up of every block lasts at least this long (and at least DISCARD calls): ONNX Runtime's
# spinning worker threads slow the next runtime's first calls for tens of ms, and spinning stays on
# because a deployment runs with it (docs/measurements.md).
SETTLE_S = 0.1


def settle(fn: Callable[[], object], calls: int, seconds: float) -> None:
    """Call ``fn`` untimed at least ``calls`` times and for at least ``seconds``."""
    deadline = time.perf_counter() + seconds
    done = 0
    while done < calls or time.perf_counter() < deadline:
        fn()
        done += 1


def block_schedule(n: int, blocks: int) -> list[int]:
    """Which callable runs each block: rounds of all ``n`` in order, every other round reversed.

    ``A B C C B A A B C ...``: over a pair of rounds each callable sits once early and once late,
    so slow drift (thermal, a neighbour's job) and "who ran right before whom" hit all alike.
    """
    if n < 1:
        raise ValueError("block_schedule needs at least one callable")
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    order = list(range(n))
    return [i for r in range(blocks) for i in (order if r % 2 == 0 else order[::-1])]


def plan_blocks(
    calls: int, *, kept_per_block: int = BLOCK_CALLS - DISCARD, discard: int = DISCARD, min_blocks: int = 2
) -> tuple[int, int, int]:
    """``(blocks, block_calls, discard)`` keeping about ``calls`` calls per callable: at least
    ``min_blocks`` blocks (so the alternation has something to alternate), each keeping at most
    ``kept_per_block`` calls. Kept calls are ``blocks * (block_calls - discard)`` >= ``calls``."""
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    blocks = max(min_blocks, math.ceil(calls / kept_per_block))
    return blocks, math.ceil(calls / blocks) + discard, discard


def _check_blocks(blocks: int, block_calls: int, discard: int, settle_s: float = 0.0) -> None:
    if not settle_s >= 0:
        raise ValueError(f"settle_s must be >= 0, got {settle_s}")
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    if discard < 0:
        raise ValueError(f"discard must be >= 0, got {discard}")
    if block_calls <= discard:
        raise ValueError(f"block_calls ({block_calls}) must exceed discard ({discard})")


@dataclass(frozen=True)
class BlockPlan:
    """How one steady-state measurement runs: ``blocks`` blocks per callable, each of ``block_calls``
    consecutive calls whose first ``discard`` (lasting at least ``settle_s``) are untimed.

    Every measurement's plan is one of the named presets below (or ``covering`` a number of calls),
    so the numbers are set in one place; an invalid plan cannot be built.
    """

    blocks: int = BLOCKS
    block_calls: int = BLOCK_CALLS
    discard: int = DISCARD
    settle_s: float = SETTLE_S

    DEFAULT: ClassVar[BlockPlan]
    TUNE: ClassVar[BlockPlan]
    TUNE_QUICK: ClassVar[BlockPlan]
    PIPELINES: ClassVar[BlockPlan]
    PIPELINES_QUICK: ClassVar[BlockPlan]
    GATE: ClassVar[BlockPlan]
    GATE_REFERENCE: ClassVar[BlockPlan]
    SEQUENTIAL: ClassVar[BlockPlan]
    SEQUENTIAL_QUICK: ClassVar[BlockPlan]
    BUDGETS: ClassVar[BlockPlan]
    BUDGETS_RECORD: ClassVar[BlockPlan]
    REPORT: ClassVar[BlockPlan]

    def __post_init__(self) -> None:
        _check_blocks(self.blocks, self.block_calls, self.discard, self.settle_s)

    @classmethod
    def covering(cls, calls: int) -> BlockPlan:
        """The plan keeping about ``calls`` calls per callable (:func:`plan_blocks`): the report's."""
        return cls(*plan_blocks(calls))

    @property
    def kept_per_block(self) -> int:
        return self.block_calls - self.discard

    @property
    def kept(self) -> int:
        """Timed calls per callable over the whole run."""
        return self.blocks * self.kept_per_block

    def with_blocks(self, blocks: int | None) -> BlockPlan:
        """This plan with ``blocks`` blocks (None: unchanged), for a command's ``--blocks``."""
        return self if blocks is None else replace(self, blocks=blocks)

    def steady_state(
        self, fns: Sequence[Callable[[], object]], *, on_block: Callable[[int], object] | None = None
    ) -> list[np.ndarray]:
        """:func:`steady_state` of ``fns`` under this plan."""
        return steady_state(
            fns,
            blocks=self.blocks,
            block_calls=self.block_calls,
            discard=self.discard,
            settle_s=self.settle_s,
            on_block=on_block,
        )

    def to_dict(self) -> dict[str, int]:
        """The counts results record (``settle_s`` is the core's constant, not recorded)."""
        return {"blocks": self.blocks, "block_calls": self.block_calls, "discard": self.discard}


BlockPlan.DEFAULT = BlockPlan()
# tune times every verified configuration in one run; --quick trades blocks for a shorter search.
BlockPlan.TUNE = BlockPlan(blocks=8, block_calls=25, discard=5)
BlockPlan.TUNE_QUICK = BlockPlan(blocks=4, block_calls=20, discard=5)
# tune's pipeline search: one call is a pass over several photos (tens of ms), so fewer calls per block.
BlockPlan.PIPELINES = BlockPlan(blocks=4, block_calls=8, discard=2)
BlockPlan.PIPELINES_QUICK = BlockPlan(blocks=2, block_calls=5, discard=1)
# The in-run A/B (gate.ab, detbench ab): with the min effect these meet the calibration table's rates
# (README "Gate calibration", scripts/calibrate_gate.py); per block 5 untimed calls, then 25 timed.
BlockPlan.GATE = BlockPlan(blocks=12, block_calls=30, discard=5)
# An artifact's own slowdown when calibrating the gate: a long alternated run, 4x a gate run.
BlockPlan.GATE_REFERENCE = replace(BlockPlan.GATE, blocks=48)
# The sequential verdict (perf.sequential): the gate's blocks, at most as many as the reference run,
# since a change that 48 pairs cannot place on either side of the min effect is reported unknown.
BlockPlan.SEQUENTIAL = replace(BlockPlan.GATE, blocks=48)
# Re-baselining's smoke and test plan (--detbench-rebaseline-plan quick): short blocks, half the cap,
# so decisive changes decide in seconds; small ones more often end unknown. The settle time stays.
BlockPlan.SEQUENTIAL_QUICK = BlockPlan(blocks=24, block_calls=12, discard=2)
# One latency ratio budget: 16 paired blocks give a CI of about +-2 % on the development machine.
BlockPlan.BUDGETS = BlockPlan(blocks=16, block_calls=15, discard=5)
# The report's batch-1 latency at its default --rounds: the budgets' plan, so the same alternated run
# also judges the latency budgets (no second run); other --rounds are covered by ``covering``.
BlockPlan.REPORT = BlockPlan.BUDGETS
# Recording a machine's budget bounds (scripts/measure_budgets.py): a longer run than a check.
BlockPlan.BUDGETS_RECORD = replace(BlockPlan.BUDGETS, blocks=40)


def steady_state(
    fns: Sequence[Callable[[], object]],
    *,
    blocks: int = BLOCKS,
    block_calls: int = BLOCK_CALLS,
    discard: int = DISCARD,
    settle_s: float = SETTLE_S,
    on_block: Callable[[int], object] | None = None,
) -> list[np.ndarray]:
    """Seconds per kept call for each of ``fns``: its steady state, as a deployment sees it.

    Each callable runs ``blocks`` blocks of consecutive calls, the blocks ordered by
    :func:`block_schedule`. A block starts with untimed calls, at least ``discard`` of them and for
    at least ``settle_s`` (they pay for caches the other callables evicted, for the previous
    runtime's threads still spinning, and for this runtime's pool spinning back up), then keeps
    ``block_calls - discard`` timed calls. Returns
    one flat array of ``blocks * (block_calls - discard)`` samples per callable, block after block,
    so :func:`block_medians` can pair block k of A with block k of B. ``on_block(kept)`` is called
    after every block (progress bars).

    Runtimes keep their deployment defaults while timed: ONNX Runtime's worker threads spin for a
    while after a call, and turning that off (``session.intra_op.allow_spinning`` = 0) doubled its
    2-thread latency in a trial here. Calling one runtime at a time per call (the old per-call
    interleaving) let the idle runtime's spinning threads steal the cores from the busy one (+77 %
    for ORT at 2 threads); blocks whose untimed start outlasts that spinning (``SETTLE_S``) fix it
    without changing how any runtime runs.
    """
    if not fns:
        raise ValueError("steady_state needs at least one callable")
    _check_blocks(blocks, block_calls, discard, settle_s)
    kept = block_calls - discard
    runs = [functools.partial(time_block, fn, kept, discard, settle_s) for fn in fns]
    return alternated_blocks(runs, blocks, on_block=on_block)


def time_block(fn: Callable[[], object], kept: int, discard: int, settle_s: float) -> np.ndarray:
    """One block of :func:`steady_state`: ``fn`` untimed at least ``discard`` times and for at least
    ``settle_s``, then ``kept`` timed calls; nanoseconds per timed call."""
    settle(fn, discard, settle_s)
    ns = np.empty(kept, dtype=np.int64)
    for c in range(kept):
        ns[c] = _time_call(fn)
    return ns


def alternated_blocks(
    runs: Sequence[Callable[[], Sequence[int] | np.ndarray]],
    blocks: int,
    *,
    on_block: Callable[[int], object] | None = None,
) -> list[np.ndarray]:
    """Run ``blocks`` blocks of each of ``runs`` in :func:`block_schedule` order and return each one's
    seconds per kept call, block after block; ``runs[i]()`` runs one block and returns its
    nanoseconds per kept call (:func:`time_block` here, or a worker process's block: ``perf.abenv``).
    ``on_block(kept)`` is called after every block."""
    if not runs:
        raise ValueError("alternated_blocks needs at least one block runner")
    ns: list[list[np.ndarray]] = [[] for _ in runs]
    for i in block_schedule(len(runs), blocks):
        block = np.asarray(runs[i](), dtype=np.int64)
        ns[i].append(block)
        if on_block is not None:
            on_block(block.size)
    return [np.concatenate(row).astype(np.float64) / 1e9 for row in ns]


def alone(
    fn: Callable[[], object],
    *,
    blocks: int = BLOCKS,
    block_calls: int = BLOCK_CALLS,
    discard: int = DISCARD,
    settle_s: float = SETTLE_S,
) -> np.ndarray:
    """``fn`` timed by itself with as many kept calls as :func:`steady_state` keeps, all consecutive
    after the same untimed warm-up as one block: what a deployment running only ``fn`` sees, the
    reference a blocked measurement must agree with."""
    _check_blocks(blocks, block_calls, discard, settle_s)
    settle(fn, discard, settle_s)
    return measure(fn, rounds=blocks * (block_calls - discard), warmup=0)


@dataclass(frozen=True)
class Agreement:
    """One callable's median seconds timed alone and in alternated blocks beside the others."""

    alone_p50_s: float
    blocked_p50_s: float
    round_ratios: tuple[float, ...]  # per round: blocked median / alone median, phases side by side

    @property
    def diff(self) -> float:
        """Median over rounds of blocked / alone - 1 (0.03: 3 % slower blocked). Paired by round, so a
        neighbour's job that slows one round slows both of its phases and cancels."""
        return float(np.median(self.round_ratios)) - 1.0


def blocked_vs_alone(
    fns: Sequence[Callable[[], object]],
    *,
    rounds: int = 8,
    blocks: int = 2,
    block_calls: int = BLOCK_CALLS,
    discard: int = DISCARD,
    settle_s: float = SETTLE_S,
) -> list[Agreement]:
    """Does the block-alternated median of each callable match the callable timed by itself?

    ``rounds`` times, one :func:`steady_state` run of all callables (``blocks`` blocks each) and,
    for each callable, an :func:`alone` run of as many calls (consecutive calls only), the two
    phases swapping places every round so drift on a shared machine moves both alike. The p50s pool
    all rounds; ``diff`` pairs the phases of each round. A method that measures the steady state
    gives ``diff`` near 0 for every callable.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    _check_blocks(blocks, block_calls, discard, settle_s)
    plan = {"blocks": blocks, "block_calls": block_calls, "discard": discard, "settle_s": settle_s}
    solo: list[list[np.ndarray]] = [[] for _ in fns]
    mixed: list[list[np.ndarray]] = [[] for _ in fns]

    def run_alone(order: Sequence[int]) -> None:
        for i in order:
            solo[i].append(alone(fns[i], **plan))

    def run_blocked(order: Sequence[int]) -> None:
        for i, x in zip(order, steady_state([fns[i] for i in order], **plan)):
            mixed[i].append(x)

    # Short phases, swapped every round: a neighbour's job that comes and goes lands on both alike.
    forward = list(range(len(fns)))
    for r in range(rounds):
        order = forward if r % 2 == 0 else forward[::-1]
        for phase in (run_alone, run_blocked) if r % 2 == 0 else (run_blocked, run_alone):
            phase(order)
    return [
        Agreement(
            float(np.median(np.concatenate(a))),
            float(np.median(np.concatenate(m))),
            tuple(float(np.median(mr) / np.median(ar)) for ar, mr in zip(a, m)),
        )
        for a, m in zip(solo, mixed)
    ]


def block_medians(samples: Sequence[float] | np.ndarray, blocks: int) -> np.ndarray:
    """Median of each block of a :func:`steady_state` sample (for paired statistics: block k of A
    ran next to block k of B, so their ratio cancels the drift both saw)."""
    x = np.asarray(samples, dtype=np.float64)
    if blocks < 1 or x.size % blocks:
        raise ValueError(f"{x.size} samples do not split into {blocks} equal blocks")
    return np.median(x.reshape(blocks, -1), axis=1)


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
