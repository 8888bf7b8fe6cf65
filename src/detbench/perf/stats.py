"""Latency statistics: percentiles, ratio CIs, paired and unpaired tests, and the verdicts built on them.

Two designs, two sets of statistics, one module for the gate, ``ab``, budgets and the report:

- **Paired** (one run, the things compared alternated in blocks, A B B A): block *i* of A and block
  *i* of B ran side by side, so drift hits both alike and the per-block ratio cancels it. Statistics
  work on those ratios: their Hodges-Lehmann location, a paired BCa bootstrap CI (``scipy.stats.bootstrap``,
  ``paired=True``) and a one-sided Wilcoxon signed-rank test on their logs.
- **Unpaired** (two saved runs, e.g. pytest-benchmark files from two sessions): nothing pairs a round
  of one run with a round of the other, so the ratio of medians gets an independent two-sample
  bootstrap CI and significance a Mann-Whitney U test.

A latency claim is only worth gating on when it is both *significant* and *large*: tiny consistent
shifts are significant with many samples, and large swings are common with few.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sstats

from detbench.schema import NanFloat, doc

CI_CONFIDENCE = 0.95
"""Confidence of the change CI in a Verdict (the gate's table header says "95% CI")."""

N_RESAMPLES = 2000
"""Bootstrap resamples per interval: the CI ends move by well under 0.1 % between seeds at this count."""


def _as_samples(samples: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(samples, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{what}: no samples")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: samples must be finite (got NaN or inf)")
    return arr


def _as_latencies(samples: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = _as_samples(samples, what)
    if np.any(arr < 0):
        raise ValueError(f"{what}: latencies must be >= 0")
    return arr


def _check_ci(confidence: float, n_boot: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def percentiles(
    samples: Sequence[float] | np.ndarray, qs: Sequence[float] = (50, 90, 99)
) -> dict[str, float]:
    """Percentiles keyed "p50", "p90", "p99" (or "p99.9" for q=99.9), numpy's linear interpolation."""
    arr = _as_samples(samples, "percentiles")
    values = np.percentile(arr, list(qs))
    return {f"p{q:g}": float(v) for q, v in zip(qs, values)}


def _axis_stat(stat: Callable[..., object]) -> Callable[..., np.ndarray]:
    """``stat`` with an ``axis`` argument, as scipy's vectorized bootstrap wants it."""

    def with_axis(x: np.ndarray, axis: int = -1) -> np.ndarray:
        try:
            return np.asarray(stat(x, axis=axis), dtype=np.float64)
        except TypeError:  # a statistic without an axis argument: slower, still correct
            return np.apply_along_axis(stat, axis, x).astype(np.float64)

    return with_axis


def _bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    *,
    paired: bool,
    method: str,
    confidence: float,
    n_boot: int,
    seed: int,
) -> tuple[float, float]:
    """scipy's bootstrap CI; a degenerate sample (every resample equal) gets the point as its CI."""
    point = float(statistic(*data, axis=-1))
    with warnings.catch_warnings():
        # Constant data makes BCa's acceleration 0/0; scipy warns and returns NaN: handled below.
        warnings.simplefilter("ignore", _sstats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = _sstats.bootstrap(
            data,
            statistic,
            paired=paired,
            vectorized=True,
            method=method,
            confidence_level=confidence,
            n_resamples=n_boot,
            rng=np.random.default_rng(seed),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        return point, point
    return low, high


def bootstrap_ratio_ci(
    num: Sequence[float] | np.ndarray,
    den: Sequence[float] | np.ndarray,
    *,
    stat: Callable[..., object] = np.median,
    n_boot: int = N_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """UNPAIRED: ``stat(num) / stat(den)`` and its two-sample percentile-bootstrap CI, ``(ratio, low, high)``.

    Each side is resampled independently (``scipy.stats.bootstrap``, ``paired=False``): for two runs
    whose samples are not pairs. Interleaved samples of one run go to :func:`paired_ratio_ci`.
    Percentile, not BCa: the median's jackknife, which BCa needs, is degenerate on tied timings.
    """
    _check_ci(confidence, n_boot)
    num_arr = _as_samples(num, "numerator")
    den_arr = _as_samples(den, "denominator")
    den_stat = float(stat(den_arr))  # type: ignore[arg-type]
    if den_stat == 0:
        raise ValueError("denominator statistic is 0; the ratio is undefined")
    ratio = float(stat(num_arr)) / den_stat  # type: ignore[arg-type]
    if num_arr.size < 2 or den_arr.size < 2:
        return ratio, ratio, ratio  # one sample cannot be resampled into anything else
    s = _axis_stat(stat)

    def ratio_of(n: np.ndarray, d: np.ndarray, axis: int = -1) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return s(n, axis=axis) / s(d, axis=axis)

    low, high = _bootstrap(
        (num_arr, den_arr),
        ratio_of,
        paired=False,
        method="percentile",
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
    )
    return ratio, low, high


def median_ci(
    samples: Sequence[float] | np.ndarray, *, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """The median and its percentile-bootstrap CI as ``(median, low, high)``."""
    arr = _as_samples(samples, "samples")
    median = float(np.median(arr))
    if arr.size < 2:
        return median, median, median
    low, high = _bootstrap(
        (arr,),
        lambda x, axis=-1: np.median(x, axis=axis),
        paired=False,
        method="percentile",
        confidence=confidence,
        n_boot=N_RESAMPLES,
        seed=seed,
    )
    return median, low, high


# -- paired: per-block ratios of one interleaved run ---------------------------------------------------


def _paired(base: Sequence[float] | np.ndarray, cand: Sequence[float] | np.ndarray, name: str):
    base_arr = _as_latencies(base, f"{name}: baseline")
    cand_arr = _as_latencies(cand, f"{name}: candidate")
    if base_arr.size != cand_arr.size:
        raise ValueError(
            f"{name}: paired samples need one baseline value per candidate value, "
            f"got {base_arr.size} and {cand_arr.size}"
        )
    if np.any(base_arr == 0) or np.any(cand_arr == 0):
        raise ValueError(f"{name}: paired ratios need latencies > 0")
    return base_arr, cand_arr


def paired_ratios(
    base: Sequence[float] | np.ndarray, cand: Sequence[float] | np.ndarray, *, name: str = "paired"
) -> np.ndarray:
    """``cand[i] / base[i]``: the ratio of each pair of side-by-side blocks (or rounds)."""
    base_arr, cand_arr = _paired(base, cand, name)
    return cand_arr / base_arr


def _hodges_lehmann(d: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median of the Walsh averages (d_i + d_j) / 2, i <= j: the estimate that goes with Wilcoxon."""
    d = np.moveaxis(np.asarray(d, dtype=np.float64), axis, -1)
    i, j = np.triu_indices(d.shape[-1])
    return np.median((d[..., i] + d[..., j]) / 2, axis=-1)


def _paired_ratio(base: np.ndarray, cand: np.ndarray, axis: int = -1) -> np.ndarray:
    # exp(Hodges-Lehmann of the log ratios): symmetric (A/B = 1/(B/A)), robust to the odd block a
    # neighbour's burst ruins (docs/measurements.md), smooth enough for BCa.
    return np.exp(_hodges_lehmann(np.log(cand) - np.log(base), axis=axis))


def paired_ratio_ci(
    base: Sequence[float] | np.ndarray,
    cand: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = N_RESAMPLES,
    seed: int = 0,
    name: str = "paired",
) -> tuple[float, float, float]:
    """PAIRED: the typical ``cand[i] / base[i]`` and its paired BCa bootstrap CI, ``(ratio, low, high)``.

    The typical ratio is exp(Hodges-Lehmann estimate of the log ratios), the location estimate of the
    Wilcoxon signed-rank test the gate uses, so the estimate and the test agree.

    Pairs are resampled together (``scipy.stats.bootstrap(paired=True, method="BCa")``), so what
    drifted both sides of a pair alike cancels and the interval is as narrow as the design allows.
    """
    _check_ci(confidence, n_boot)
    base_arr, cand_arr = _paired(base, cand, name)
    ratio = float(_paired_ratio(base_arr, cand_arr))
    if base_arr.size < 3:
        return ratio, ratio, ratio  # BCa's jackknife needs a few pairs
    low, high = _bootstrap(
        (base_arr, cand_arr),
        _paired_ratio,
        paired=True,
        method="BCa",
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
    )
    return ratio, low, high


@functools.cache
def _walsh_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i <= j of the Walsh averages of n values (cached: a sequential test asks per look)."""
    return np.triu_indices(n)


@functools.cache
def _signed_rank_cdf(n: int) -> np.ndarray:
    """P(T+ <= t), t = 0 .. n(n+1)/2: the exact null distribution of the signed-rank sum of n pairs."""
    pmf = np.ones(1)
    for rank in range(1, n + 1):
        grown = np.zeros(pmf.size + rank)
        grown[: pmf.size] += pmf  # rank ``rank`` negative
        grown[rank:] += pmf  # rank ``rank`` positive
        pmf = grown / 2
    return np.cumsum(pmf)


def signed_rank_ratio_ci(
    base: Sequence[float] | np.ndarray,
    cand: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    name: str = "paired",
) -> tuple[float, float, float]:
    """PAIRED: the typical ``cand[i] / base[i]`` and the interval that inverts the Wilcoxon
    signed-rank test, ``(ratio, low, high)``.

    The ratio is :func:`paired_ratio_ci`'s (exp Hodges-Lehmann of the log ratios); the ends are order
    statistics of the Walsh averages, cut where the exact null distribution of the signed-rank sum
    puts ``(1 - confidence) / 2`` in each tail, so the low end is above 1 exactly when
    :func:`wilcoxon_slower` (exact for up to 50 untied pairs) is at most that tail. Unlike the
    bootstrap it stays honest at the extreme confidences of a corrected sequential test: too few
    pairs for the confidence give the unbounded interval ``(0, inf)`` rather than the data's range.
    """
    _check_ci(confidence, 1)
    base_arr, cand_arr = _paired(base, cand, name)
    d = np.log(cand_arr) - np.log(base_arr)
    i, j = _walsh_pairs(d.size)
    walsh = np.sort((d[i] + d[j]) / 2)
    ratio = float(np.exp((walsh[(walsh.size - 1) // 2] + walsh[walsh.size // 2]) / 2))  # the median
    # k: how many of the smallest signed-rank sums the tail may hold; the k-th Walsh average is the low end.
    k = int(np.searchsorted(_signed_rank_cdf(d.size), (1 - confidence) / 2 * (1 + 1e-9), side="right"))
    if k == 0:
        return ratio, 0.0, math.inf
    return ratio, float(np.exp(walsh[k - 1])), float(np.exp(walsh[walsh.size - k]))


def _wilcoxon(base: np.ndarray, cand: np.ndarray, alternative: str) -> float:
    d = np.log(cand) - np.log(base)
    if not np.any(d != 0):
        return 1.0  # every pair tied: no evidence either way
    p = float(_sstats.wilcoxon(d, alternative=alternative, zero_method="wilcox").pvalue)
    return 1.0 if np.isnan(p) else p


def wilcoxon_slower(base: Sequence[float] | np.ndarray, cand: Sequence[float] | np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p-value for "cand is slower than base", on paired log ratios."""
    return _wilcoxon(*_paired(base, cand, "wilcoxon"), "greater")


def _mann_whitney(cand: np.ndarray, base: np.ndarray, alternative: str) -> float:
    p = float(_sstats.mannwhitneyu(cand, base, alternative=alternative).pvalue)
    return 1.0 if np.isnan(p) else p  # all-identical samples: no evidence either way


def mann_whitney_slower(base: Sequence[float] | np.ndarray, cand: Sequence[float] | np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value for "cand tends to be slower than base"."""
    return _mann_whitney(_as_samples(cand, "candidate"), _as_samples(base, "baseline"), "greater")


def mann_whitney_faster(base: Sequence[float] | np.ndarray, cand: Sequence[float] | np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value for "cand tends to be faster than base"."""
    return _mann_whitney(_as_samples(cand, "candidate"), _as_samples(base, "baseline"), "less")


GATE_ALPHA = 0.01
"""Default significance level of the gate's one-sided tests."""

PAIRED_MIN_EFFECT = 0.03
"""Default smallest paired change the gate calls a regression, chosen from the calibration table
(scripts/calibrate_gate.py; README "Gate calibration"): the paired change of fresh A/A runs has an
sd of ~2 % and 0 of 40 reached p < 0.01 with a change >= 2 %, 3 % or 4 %; at 3 % a +5.1 % artifact
was flagged in 12 of 20 runs and +10.7 % in 20 of 20 (the Wilcoxon p, not this threshold, limits)."""

UNPAIRED_MIN_EFFECT = 0.10
"""Default for two saved runs: run-to-run drift of a whole session (another load, another boost clock)
is not cancelled by any pairing, so only a large change between sessions is evidence."""


@dataclass(frozen=True)
class Verdict:
    """Baseline-vs-candidate outcome for one benchmark. Times in seconds; change = ratio - 1.

    Unpaired (``paired`` False): ratio of medians, independent bootstrap CI, Mann-Whitney p-value.
    Paired: typical per-block ratio (exp Hodges-Lehmann of log ratios), paired BCa CI, Wilcoxon
    signed-rank p-value; the ``n_*`` then count blocks and the medians are medians of block medians.
    ``p_value`` is one-sided in the direction of the observed change. Fields that cannot be computed are NaN.
    """

    name: str = doc("the benchmark (pytest-benchmark fullname, or the A/B's label)")
    n_base: int = doc("baseline rounds (blocks when paired); 0: absent from the baseline")
    n_cand: int = doc("candidate rounds (blocks when paired); 0: absent from the candidate")
    median_base: NanFloat = doc("baseline median, s; null when absent")
    median_cand: NanFloat = doc("candidate median, s; null when absent")
    change: NanFloat = doc("candidate / baseline - 1 (typical paired ratio - 1 when paired)")
    ci_low: NanFloat = doc("the change's bootstrap interval (BCa when paired), low end")
    ci_high: NanFloat = doc("its high end")
    p_value: NanFloat = doc("one-sided, in the direction of the change (Mann-Whitney; Wilcoxon when paired)")
    status: str = doc("regression, improvement, no change, inconclusive or missing")
    paired: bool = doc("blocks were alternated in one run and paired", default=False)


def _check_settings(alpha: float, min_effect: float, min_samples: int) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_effect < 0:
        raise ValueError(f"min_effect must be >= 0, got {min_effect}")
    if min_samples < 2:
        raise ValueError(f"min_samples must be >= 2, got {min_samples}")


def _status(n: int, min_samples: int, p_slower: float, p_faster: float, change: float, alpha: float,
            min_effect: float) -> str:  # fmt: skip
    if n < min_samples:
        return "inconclusive"
    if p_slower < alpha and change >= min_effect:
        return "regression"
    if p_faster < alpha and change <= -min_effect:
        return "improvement"
    return "no change"


def compare_samples(
    name: str,
    base: Sequence[float] | np.ndarray,
    cand: Sequence[float] | np.ndarray,
    *,
    alpha: float = GATE_ALPHA,
    min_effect: float = UNPAIRED_MIN_EFFECT,
    min_samples: int = 9,
    seed: int = 0,
) -> Verdict:
    """UNPAIRED: classify cand against base; a regression needs p < alpha AND change >= min_effect.

    For samples of two separate runs (saved pytest-benchmark files). Samples of one interleaved run
    are pairs: use :func:`compare_paired`.
    """
    _check_settings(alpha, min_effect, min_samples)
    base_arr = _as_latencies(base, f"{name}: baseline")
    cand_arr = _as_latencies(cand, f"{name}: candidate")
    median_base = float(np.median(base_arr))
    median_cand = float(np.median(cand_arr))
    if median_base > 0:
        ratio, low, high = bootstrap_ratio_ci(cand_arr, base_arr, confidence=CI_CONFIDENCE, seed=seed)
        change, ci_low, ci_high = ratio - 1, low - 1, high - 1
    else:
        change = ci_low = ci_high = float("nan")
    p_slower = mann_whitney_slower(base_arr, cand_arr)
    p_faster = mann_whitney_faster(base_arr, cand_arr)
    return Verdict(
        name=name,
        n_base=int(base_arr.size),
        n_cand=int(cand_arr.size),
        median_base=median_base,
        median_cand=median_cand,
        change=float(change),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=float(p_faster if change < 0 else p_slower),
        status=_status(
            min(base_arr.size, cand_arr.size), min_samples, p_slower, p_faster, change, alpha, min_effect
        ),
    )


def compare_paired(
    name: str,
    base: Sequence[float] | np.ndarray,
    cand: Sequence[float] | np.ndarray,
    *,
    alpha: float = GATE_ALPHA,
    min_effect: float = PAIRED_MIN_EFFECT,
    min_samples: int = 8,
    seed: int = 0,
) -> Verdict:
    """PAIRED: classify cand against base from side-by-side block statistics.

    ``base[i]`` ran next to ``cand[i]`` (block medians of ``timing.steady_state``).

    Regression needs the one-sided Wilcoxon p < alpha AND the typical ratio's change >= min_effect.
    """
    _check_settings(alpha, min_effect, min_samples)
    base_arr, cand_arr = _paired(base, cand, name)
    ratio, low, high = paired_ratio_ci(base_arr, cand_arr, confidence=CI_CONFIDENCE, seed=seed, name=name)
    change = ratio - 1
    p_slower = _wilcoxon(base_arr, cand_arr, "greater")
    p_faster = _wilcoxon(base_arr, cand_arr, "less")
    return Verdict(
        name=name,
        n_base=int(base_arr.size),
        n_cand=int(cand_arr.size),
        median_base=float(np.median(base_arr)),
        median_cand=float(np.median(cand_arr)),
        change=float(change),
        ci_low=float(low - 1),
        ci_high=float(high - 1),
        p_value=float(p_faster if change < 0 else p_slower),
        status=_status(int(base_arr.size), min_samples, p_slower, p_faster, change, alpha, min_effect),
        paired=True,
    )


@dataclass(frozen=True)
class BudgetResult:
    """Outcome of a ``num / den <= budget`` check (paired: the typical block ratio)."""

    name: str
    ratio: float
    ci_low: float
    ci_high: float
    budget: float
    passed: bool
    reason: str


def check_ratio_budget(
    name: str,
    num: Sequence[float] | np.ndarray,
    den: Sequence[float] | np.ndarray,
    budget: float,
    *,
    paired: bool = False,
    confidence: float = 0.95,
    seed: int = 0,
) -> BudgetResult:
    """Check a latency budget; fail only when the ratio AND the whole CI lie above the budget.

    ``paired``: ``num[i]`` and ``den[i]`` are side-by-side block medians of one interleaved run (the
    paired CI, narrow enough for a budget 10 % above the measured ratio); otherwise two independent
    sample sets (ratio of medians, unpaired CI). A ratio just over budget with a CI reaching below it
    is noise we cannot tell from a pass, so it passes (the reason says so).
    """
    if not budget > 0:
        raise ValueError(f"{name}: budget must be > 0, got {budget}")
    num_arr = _as_latencies(num, f"{name}: numerator")
    den_arr = _as_latencies(den, f"{name}: denominator")
    if paired:
        ratio, low, high = paired_ratio_ci(den_arr, num_arr, confidence=confidence, seed=seed, name=name)
        what = "paired ratio"
    else:
        ratio, low, high = bootstrap_ratio_ci(num_arr, den_arr, confidence=confidence, seed=seed)
        what = "median ratio"
    ci = f"{confidence:.0%} CI [{low:.3f}, {high:.3f}]"
    if ratio <= budget:
        passed, reason = True, f"{what} {ratio:.3f} <= budget {budget:g} ({ci})"
    elif low <= budget:
        passed = True
        reason = f"{what} {ratio:.3f} > budget {budget:g} but {ci} reaches the budget: not conclusive"
    else:
        passed, reason = False, f"{what} {ratio:.3f} > budget {budget:g} and the whole {ci} is above it"
    return BudgetResult(
        name=name, ratio=ratio, ci_low=low, ci_high=high, budget=float(budget), passed=passed, reason=reason
    )
