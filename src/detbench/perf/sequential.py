"""The sequential, three-way verdict (Chromium Pinpoint's): time baseline and candidate in alternated
blocks, a pair of blocks each at a time, until the paired statistics say *regression* or *no
regression*, or a cap on blocks or seconds is reached (*unknown*); Holm's correction over the
benchmarks of one session.

The rule, at each look (``SequentialRule.looks``: every ``look_every`` blocks per side from
``min_blocks`` to ``max_blocks``), on the block medians so far:

- **regression**: the typical paired ratio's change >= ``min_effect`` and the one-sided Wilcoxon p
  (``stats.wilcoxon_slower``) < ``alpha_look``;
- **no regression**: the interval's high end (``stats.signed_rank_ratio_ci`` at ``confidence``) is
  below ``1 + min_effect``;
- otherwise another look, and after the last one (or the time cap) **unknown**.

Looking again and again inflates the false-alarm rate, so the looks split ``alpha`` Bonferroni-wise:
``alpha_look = alpha / len(looks)`` and ``confidence = 1 - 2 * alpha_look`` (each one-sided end at
``alpha_look``, so the interval's low end is above 1 exactly when p <= ``alpha_look``). Bonferroni
rather than Pocock or O'Brien-Fleming boundaries because it holds whatever the dependence between
looks and whatever the time cap cuts off, without an information fraction that a wall-clock cap
makes unknowable in advance; it costs a little power (docs/measurements.md has the simulated rates).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from detbench.perf.stats import (
    GATE_ALPHA,
    PAIRED_MIN_EFFECT,
    signed_rank_ratio_ci,
    wilcoxon_slower,
)
from detbench.perf.timing import BlockPlan, alternated_blocks, block_medians, time_block
from detbench.schema import NanFloat, doc

REGRESSION = "regression"
NO_REGRESSION = "no regression"
UNKNOWN = "unknown"
OUTCOMES = (REGRESSION, NO_REGRESSION, UNKNOWN)

# The fixed in-run gate's 12 pairs: fewer cannot reach the corrected alpha (the exact Wilcoxon's
# smallest p with n pairs is 2**-n, 2.4e-4 at 12).
MIN_BLOCKS = 12
# One look per A B B A round: every look then sees each side as often first as second in its pairs.
LOOK_EVERY = 2


@dataclass(frozen=True)
class SequentialRule:
    """When the sequential verdict looks and what each look decides (the module docstring's rule)."""

    alpha: float = GATE_ALPHA
    min_effect: float = PAIRED_MIN_EFFECT
    min_blocks: int = MIN_BLOCKS
    max_blocks: int = BlockPlan.SEQUENTIAL.blocks
    look_every: int = LOOK_EVERY

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not self.min_effect >= 0:
            raise ValueError(f"min_effect must be >= 0, got {self.min_effect}")
        if self.min_blocks < 2:
            raise ValueError(f"min_blocks must be >= 2, got {self.min_blocks}")
        if self.look_every < 1:
            raise ValueError(f"look_every must be >= 1, got {self.look_every}")
        if self.max_blocks < self.min_blocks or (self.max_blocks - self.min_blocks) % self.look_every:
            raise ValueError(
                f"max_blocks ({self.max_blocks}) must be min_blocks ({self.min_blocks}) plus a multiple "
                f"of look_every ({self.look_every})"
            )

    @property
    def looks(self) -> tuple[int, ...]:
        """Blocks per side at each planned look."""
        return tuple(range(self.min_blocks, self.max_blocks + 1, self.look_every))

    @property
    def alpha_look(self) -> float:
        """Each look's share of ``alpha`` (Bonferroni over the planned looks)."""
        return self.alpha / len(self.looks)

    @property
    def confidence(self) -> float:
        """The interval's confidence: each end one-sided at ``alpha_look``."""
        return 1 - 2 * self.alpha_look


@dataclass(frozen=True)
class Look:
    """What one look at ``n`` pairs of block medians found; ``outcome`` None: look again."""

    outcome: str | None
    n: int
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float  # NaN where the change is below min_effect: the test cannot decide there


def look(
    base: Sequence[float] | np.ndarray, cand: Sequence[float] | np.ndarray, rule: SequentialRule
) -> Look:
    """One look of ``rule`` at paired block medians (``base[i]`` ran beside ``cand[i]``): the pure
    decision step of :func:`run_sequential`."""
    ratio, low, high = signed_rank_ratio_ci(base, cand, confidence=rule.confidence, name="sequential")
    n = len(base)
    if ratio - 1 >= rule.min_effect:
        # Tested only when the change is large enough to matter: the p-value is the costly part.
        p = wilcoxon_slower(base, cand)
        return Look(REGRESSION if p < rule.alpha_look else None, n, ratio, low, high, p)
    outcome = NO_REGRESSION if high - 1 < rule.min_effect else None
    return Look(outcome, n, ratio, low, high, math.nan)


@dataclass(frozen=True, kw_only=True)
class SequentialVerdict:
    """The sequential verdict on one benchmark (candidate against baseline, paired in one run)."""

    name: str = doc("the benchmark")
    outcome: str = doc("regression, no regression or unknown")
    ratio: float = doc(
        "typical candidate / baseline block-median ratio (exp Hodges-Lehmann of the log ratios)"
    )
    ci_low: float = doc("the ratio's signed-rank interval at `confidence`, low end")
    ci_high: NanFloat = doc("its high end; null when unbounded (too few blocks for the confidence)")
    confidence: float = doc("the interval's confidence, 1 - 2 alpha / looks_planned")
    p_value: float = doc("one-sided Wilcoxon p (slower) at the last look, uncorrected")
    p_adjusted: float = doc(
        "p_value x looks_planned (capped at 1), Holm-adjusted over the session's benchmarks by `holm`"
    )
    alpha: float = doc("family-wise significance level a regression must meet")
    min_effect: float = doc("smallest change (ratio - 1) called a regression")
    blocks: int = doc("blocks timed per side")
    looks: int = doc("looks taken")
    looks_planned: int = doc("looks the block cap allows (the Bonferroni divisor)")
    seconds: float = doc("wall-clock seconds spent timing")
    reason: str = doc("why it stopped: the deciding look, or the cap reached; Holm's demotion")

    @property
    def change(self) -> float:
        return self.ratio - 1

    def describe(self) -> str:
        """One line for a CI message: the benchmark, outcome, ratio and interval, and why."""
        high = "inf" if not math.isfinite(self.ci_high) else f"{self.ci_high:.3f}"
        return (
            f"{self.name}: {self.outcome}: candidate/baseline {self.ratio:.3f} "
            f"({self.change:+.1%}; {self.confidence:.2%} CI {self.ci_low:.3f}-{high}; "
            f"min effect {self.min_effect:.0%}; p {self.p_adjusted:.2g} adjusted) "
            f"after {self.blocks} blocks/side, {self.seconds:.1f} s: {self.reason}"
        )


def run_sequential(
    next_pairs: Callable[[int], tuple[np.ndarray, np.ndarray]],
    rule: SequentialRule,
    *,
    name: str = "candidate vs baseline",
    max_seconds: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> SequentialVerdict:
    """Draw pairs of block medians until ``rule`` decides or a cap is reached.

    ``next_pairs(k)`` times ``k`` more blocks per side and returns their block medians
    ``(base, cand)``, block *i* of one beside block *i* of the other. The block cap is
    ``rule.max_blocks``; ``max_seconds`` (None: none) stops before a look whose blocks, at the pace so
    far, would end past it; ``min_blocks`` are always timed.
    """
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    start = clock()
    base = cand = np.empty(0)
    seen: list[Look] = []
    reason = f"block cap: {rule.max_blocks} blocks/side without a decision"
    for n in rule.looks:
        if seen and max_seconds is not None:
            spent = clock() - start
            if spent + spent / base.size * (n - base.size) > max_seconds:
                reason = f"time cap: {max_seconds:g} s would pass before {n} blocks/side"
                break
        more_base, more_cand = next_pairs(n - base.size)
        base = np.concatenate([base, np.asarray(more_base, dtype=np.float64)])
        cand = np.concatenate([cand, np.asarray(more_cand, dtype=np.float64)])
        if base.size != n or cand.size != n:
            raise ValueError(f"next_pairs returned {base.size} and {cand.size} blocks in all, expected {n}")
        seen.append(look(base, cand, rule))
        if seen[-1].outcome is not None:
            break
    last = seen[-1]
    outcome = last.outcome or UNKNOWN
    p = last.p_value if not math.isnan(last.p_value) else wilcoxon_slower(base, cand)
    if outcome == REGRESSION:
        reason = f"p < {rule.alpha_look:.2g} (alpha {rule.alpha:g} over {len(rule.looks)} looks)"
    elif outcome == NO_REGRESSION:
        reason = f"the interval's high end is below the min effect {rule.min_effect:.0%}"
    return SequentialVerdict(
        name=name,
        outcome=outcome,
        ratio=last.ratio,
        ci_low=last.ci_low,
        ci_high=last.ci_high,
        confidence=rule.confidence,
        p_value=p,
        p_adjusted=min(1.0, p * len(rule.looks)),
        alpha=rule.alpha,
        min_effect=rule.min_effect,
        blocks=last.n,
        looks=len(seen),
        looks_planned=len(rule.looks),
        seconds=clock() - start,
        reason=reason,
    )


def compare_sequential(
    base_fn: Callable[[], object],
    cand_fn: Callable[[], object],
    *,
    plan: BlockPlan = BlockPlan.SEQUENTIAL,
    name: str = "candidate vs baseline",
    alpha: float = GATE_ALPHA,
    min_effect: float = PAIRED_MIN_EFFECT,
    min_blocks: int = MIN_BLOCKS,
    look_every: int = LOOK_EVERY,
    max_seconds: float | None = None,
    on_block: Callable[[int], object] | None = None,
) -> SequentialVerdict:
    """Time ``base_fn`` and ``cand_fn`` in alternated blocks on this machine (the timing core's
    :func:`time_block` under ``plan``, A B B A ... across looks) until the sequential rule decides;
    ``plan.blocks`` is the block cap, ``max_seconds`` the time cap (:func:`run_sequential`)."""
    rule = SequentialRule(alpha, min_effect, min_blocks, plan.blocks, look_every)
    runs = [
        functools.partial(time_block, fn, plan.kept_per_block, plan.discard, plan.settle_s)
        for fn in (base_fn, cand_fn)
    ]
    rounds = 0

    def next_pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
        nonlocal rounds
        # Continue block_schedule's order across looks: after an odd number of rounds, B goes first.
        flip = rounds % 2 == 1
        times = alternated_blocks(runs[::-1] if flip else runs, k, on_block=on_block)
        base, cand = times[::-1] if flip else times
        rounds += k
        return block_medians(base, k), block_medians(cand, k)

    return run_sequential(next_pairs, rule, name=name, max_seconds=max_seconds)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest of m times
    ``m - i + 1``, never below the one before it, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    if np.any(~(p >= 0) | ~(p <= 1)):
        raise ValueError(f"p-values must be in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (p.size - np.arange(p.size))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted.tolist()


def holm(verdicts: Sequence[SequentialVerdict]) -> list[SequentialVerdict]:
    """The session's verdicts with Holm's correction over them: each ``p_adjusted`` (already
    corrected for its looks) Holm-adjusted over all of them, and a regression whose adjusted p is not
    below its ``alpha`` demoted to unknown (the evidence would need more blocks), saying so."""
    adjusted = holm_adjust([v.p_adjusted for v in verdicts])
    out = []
    for v, p in zip(verdicts, adjusted):
        changes: dict[str, object] = {"p_adjusted": p}
        if v.outcome == REGRESSION and not p < v.alpha:
            changes["outcome"] = UNKNOWN
            changes["reason"] = (
                f"{v.reason}, but not after Holm over {len(verdicts)} benchmarks (p {p:.2g} >= {v.alpha:g})"
            )
        out.append(dataclasses.replace(v, **changes))
    return out


def synthetic_pairs(
    change: float, sigma: float, rng: np.random.Generator, *, drift: float = 0.1
) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """A ``next_pairs`` for :func:`run_sequential` without timing: lognormal block medians around 1 ms
    whose log ratio has sd ``sigma`` and median ``log(1 + change)``, each pair sharing a drift of sd
    ``drift`` that pairing cancels (the model the simulated error rates in docs/measurements.md use)."""

    def next_pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
        shared = rng.normal(0.0, drift, k)
        noise = rng.normal(0.0, sigma / math.sqrt(2), (2, k))
        base = 1e-3 * np.exp(shared + noise[0])
        return base, 1e-3 * np.exp(shared + math.log1p(change) + noise[1])

    return next_pairs


def simulate(
    rule: SequentialRule, *, change: float, sigma: float, trials: int, seed: int = 0
) -> dict[str, int]:
    """How often each outcome comes out of ``trials`` sequential runs on :func:`synthetic_pairs`."""
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(OUTCOMES, 0)
    for _ in range(trials):
        counts[run_sequential(synthetic_pairs(change, sigma, rng), rule).outcome] += 1
    return counts
