"""Latency statistics: percentiles, bootstrap ratio CIs and the regression verdict the gate relies on.

A latency claim on a noisy shared machine is only worth gating on when it is both *significant*
(the candidate is slower more often than chance allows) and *large* (the median moved by more than
the noise floor we are willing to chase). Either alone produces false alarms: tiny but consistent
shifts are significant with many rounds, and large median swings are common with few rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sstats

CI_CONFIDENCE = 0.95
"""Confidence of the change CI in a Verdict (the gate's table header says "95% CI")."""

"""Verdict statuses; "missing" is used by the gate for a benchmark present in only one run."""

# Bound the (n_boot x n) index matrix so big sample sets do not allocate hundreds of MB at once.
_MAX_BOOT_CELLS = 2_000_000


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


def percentiles(
    samples: Sequence[float] | np.ndarray, qs: Sequence[float] = (50, 90, 99)
) -> dict[str, float]:
    """Percentiles keyed "p50", "p90", "p99" (or "p99.9" for q=99.9), numpy's linear interpolation."""
    arr = _as_samples(samples, "percentiles")
    values = np.percentile(arr, list(qs))
    return {f"p{q:g}": float(v) for q, v in zip(qs, values)}


def _stat_rows(stat: Callable[..., object], x: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(stat(x, axis=1), dtype=np.float64)
    except TypeError:  # a statistic without an axis argument: slower, still correct
        return np.apply_along_axis(stat, 1, x).astype(np.float64)


def _bootstrap_stat(
    x: np.ndarray, stat: Callable[..., object], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    out = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, _MAX_BOOT_CELLS // x.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = _stat_rows(stat, x[idx])
    return out


def bootstrap_ratio_ci(
    num: Sequence[float] | np.ndarray,
    den: Sequence[float] | np.ndarray,
    *,
    stat: Callable[..., object] = np.median,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``stat(num) / stat(den)`` and its percentile-bootstrap CI as ``(ratio, low, high)``.

    Each side is resampled independently (the two runs are independent samples, not pairs).
    ``stat`` should accept ``axis=`` like the numpy reductions; others fall back to a row loop.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    num_arr = _as_samples(num, "numerator")
    den_arr = _as_samples(den, "denominator")
    den_stat = float(stat(den_arr))  # type: ignore[arg-type]
    if den_stat == 0:
        raise ValueError("denominator statistic is 0; the ratio is undefined")
    ratio = float(stat(num_arr)) / den_stat  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    boot_num = _bootstrap_stat(num_arr, stat, n_boot, rng)
    boot_den = _bootstrap_stat(den_arr, stat, n_boot, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = boot_num / boot_den
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(boot, [tail, 100 - tail])
    return ratio, float(low), float(high)


def _mann_whitney(cand: np.ndarray, base: np.ndarray, alternative: str) -> float:
    p = float(_sstats.mannwhitneyu(cand, base, alternative=alternative).pvalue)
    return 1.0 if np.isnan(p) else p  # all-identical samples: no evidence either way


def mann_whitney_slower(base: Sequence[float] | np.ndarray, cand: Sequence[float] | np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value for "cand tends to be slower than base"."""
    return _mann_whitney(_as_samples(cand, "candidate"), _as_samples(base, "baseline"), "greater")


def mann_whitney_faster(base: Sequence[float] | np.ndarray, cand: Sequence[float] | np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value for "cand tends to be faster than base"."""
    return _mann_whitney(_as_samples(cand, "candidate"), _as_samples(base, "baseline"), "less")


@dataclass(frozen=True)
class Verdict:
    """Baseline-vs-candidate outcome for one benchmark. Times in seconds; change = median ratio - 1.

    ``p_value`` is the one-sided Mann-Whitney p-value in the direction of the observed median change
    (slower if change >= 0, faster otherwise). Fields that cannot be computed are NaN.
    """

    name: str
    n_base: int
    n_cand: int
    median_base: float
    median_cand: float
    change: float
    ci_low: float
    ci_high: float
    p_value: float
    status: str


def _check_settings(alpha: float, min_effect: float, min_samples: int) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_effect < 0:
        raise ValueError(f"min_effect must be >= 0, got {min_effect}")
    if min_samples < 2:
        raise ValueError(f"min_samples must be >= 2, got {min_samples}")


def compare_samples(
    name: str,
    base: Sequence[float] | np.ndarray,
    cand: Sequence[float] | np.ndarray,
    *,
    alpha: float = 0.01,
    min_effect: float = 0.10,
    min_samples: int = 9,
    seed: int = 0,
) -> Verdict:
    """Classify cand against base: regression / improvement need p < alpha AND |change| >= min_effect."""
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
    p_value = p_faster if change < 0 else p_slower

    if min(base_arr.size, cand_arr.size) < min_samples:
        status = "inconclusive"
    elif p_slower < alpha and change >= min_effect:
        status = "regression"
    elif p_faster < alpha and change <= -min_effect:
        status = "improvement"
    else:
        status = "no change"
    return Verdict(
        name=name,
        n_base=int(base_arr.size),
        n_cand=int(cand_arr.size),
        median_base=median_base,
        median_cand=median_cand,
        change=float(change),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=float(p_value),
        status=status,
    )


@dataclass(frozen=True)
class BudgetResult:
    """Outcome of a ``median(num) / median(den) <= budget`` check."""

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
    confidence: float = 0.95,
    seed: int = 0,
) -> BudgetResult:
    """Check a latency budget; fail only when the median ratio AND the whole CI lie above the budget.

    A median just over budget with a CI reaching below it is noise we cannot tell from a pass, so it
    passes (the reason says so) rather than turning CI red at random.
    """
    if not budget > 0:
        raise ValueError(f"{name}: budget must be > 0, got {budget}")
    num_arr = _as_latencies(num, f"{name}: numerator")
    den_arr = _as_latencies(den, f"{name}: denominator")
    ratio, low, high = bootstrap_ratio_ci(num_arr, den_arr, confidence=confidence, seed=seed)
    ci = f"{confidence:.0%} CI [{low:.3f}, {high:.3f}]"
    if ratio <= budget:
        passed, reason = True, f"median ratio {ratio:.3f} <= budget {budget:g} ({ci})"
    elif low <= budget:
        passed = True
        reason = f"median ratio {ratio:.3f} > budget {budget:g} but {ci} reaches the budget: not conclusive"
    else:
        passed, reason = False, f"median ratio {ratio:.3f} > budget {budget:g} and the whole {ci} is above it"
    return BudgetResult(
        name=name, ratio=ratio, ci_low=low, ci_high=high, budget=float(budget), passed=passed, reason=reason
    )
