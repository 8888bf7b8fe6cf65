"""Unit tests of detbench.perf.stats on synthetic samples: percentiles, bootstrap CIs, verdicts, budgets."""

from __future__ import annotations

import numpy as np
import pytest

from detbench.perf.stats import (
    bootstrap_ratio_ci,
    check_ratio_budget,
    compare_paired,
    compare_samples,
    mann_whitney_slower,
    paired_ratio_ci,
    paired_ratios,
    percentiles,
    signed_rank_ratio_ci,
    wilcoxon_slower,
)

MS = 1e-3


def lognormal(n: int, median_s: float, sigma: float, seed: int) -> np.ndarray:
    """Latency-like samples: right-skewed, with the given median in seconds."""
    return median_s * np.random.default_rng(seed).lognormal(0.0, sigma, n)


class TestPercentiles:
    def test_matches_numpy(self):
        """Default p50/p90/p99 equal numpy's percentiles."""
        x = lognormal(101, 2 * MS, 0.3, seed=1)
        expected = np.percentile(x, [50, 90, 99])
        assert percentiles(x) == pytest.approx(dict(zip(["p50", "p90", "p99"], expected)), rel=1e-12)

    def test_custom_quantiles_are_keyed_by_value(self):
        """Non-integer quantiles keep their decimals in the key."""
        got = percentiles([1.0, 2.0, 3.0, 4.0], qs=(25, 99.9))
        assert set(got) == {"p25", "p99.9"}
        assert got["p25"] == pytest.approx(np.percentile([1, 2, 3, 4], 25))

    @pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
    def test_rejects_empty_or_non_finite(self, bad):
        """Empty or non-finite samples raise instead of returning NaN percentiles."""
        with pytest.raises(ValueError, match="samples"):
            percentiles(bad)


class TestBootstrapRatioCI:
    def test_contains_true_ratio(self):
        """The 95% CI of median(num)/median(den) contains the true ratio 1.3."""
        den = lognormal(200, 2 * MS, 0.2, seed=2)
        num = lognormal(200, 2.6 * MS, 0.2, seed=3)
        ratio, low, high = bootstrap_ratio_ci(num, den)
        assert low <= 1.3 <= high
        assert low <= ratio <= high

    def test_coverage_near_nominal(self):
        """Over 60 independent datasets the 95% CI covers the true ratio in at least 85% of them."""
        hits = 0
        for k in range(60):
            den = lognormal(60, 2 * MS, 0.25, seed=1000 + k)
            num = lognormal(60, 3 * MS, 0.25, seed=2000 + k)
            _, low, high = bootstrap_ratio_ci(num, den, n_boot=1000, seed=k)
            hits += low <= 1.5 <= high
        assert hits >= 51

    def test_narrow_for_large_samples(self):
        """With 5000 samples a side the CI is a few percent wide and far narrower than with 50."""
        widths = {}
        for n in (50, 5000):
            den = lognormal(n, 2 * MS, 0.2, seed=4)
            num = lognormal(n, 2.2 * MS, 0.2, seed=5)
            _, low, high = bootstrap_ratio_ci(num, den, n_boot=500)
            widths[n] = high - low
        assert widths[5000] < 0.03
        assert widths[5000] < widths[50] / 4

    def test_seeded_and_reproducible(self):
        """The same seed gives the same CI; another seed gives a different one."""
        den, num = lognormal(30, MS, 0.3, seed=6), lognormal(30, MS, 0.3, seed=7)
        assert bootstrap_ratio_ci(num, den, seed=1) == bootstrap_ratio_ci(num, den, seed=1)
        assert bootstrap_ratio_ci(num, den, seed=1) != bootstrap_ratio_ci(num, den, seed=2)

    def test_accepts_statistic_without_axis(self):
        """A plain Python statistic (no axis argument) gives the same answer as its numpy twin."""
        den, num = lognormal(40, MS, 0.3, seed=8), lognormal(40, MS, 0.3, seed=9)
        fast = bootstrap_ratio_ci(num, den, stat=np.mean, n_boot=300)
        slow = bootstrap_ratio_ci(num, den, stat=lambda x: float(np.mean(x)), n_boot=300)
        assert slow == pytest.approx(fast)

    def test_rejects_bad_confidence(self):
        """A confidence outside (0, 1) is an error naming the argument."""
        with pytest.raises(ValueError, match="confidence"):
            bootstrap_ratio_ci([1.0, 2.0], [1.0, 2.0], confidence=95)


class TestMannWhitney:
    def test_direction(self):
        """The p-value is small when the candidate is slower and large when it is faster."""
        base = lognormal(30, MS, 0.1, seed=10)
        slower = lognormal(30, 1.5 * MS, 0.1, seed=11)
        assert mann_whitney_slower(base, slower) < 1e-6
        assert mann_whitney_slower(slower, base) > 0.99

    def test_identical_constant_samples(self):
        """All-equal samples give no evidence (p = 1), never NaN."""
        assert mann_whitney_slower([1.0] * 10, [1.0] * 10) == 1.0


class TestCompareSamples:
    def test_flags_30_percent_slowdown(self):
        """A 30% slower candidate with 30 rounds each is a regression with a CI around +30%."""
        base = lognormal(30, 2 * MS, 0.05, seed=12)
        cand = lognormal(30, 2.6 * MS, 0.05, seed=13)
        v = compare_samples("net", base, cand)
        assert v.status == "regression"
        assert v.ci_low < 0.30 < v.ci_high
        assert v.change == pytest.approx(v.median_cand / v.median_base - 1)
        assert (v.name, v.n_base, v.n_cand) == ("net", 30, 30)
        assert v.p_value < 0.01

    def test_no_change_for_same_distribution(self):
        """Two independent draws from one distribution are "no change"."""
        v = compare_samples("net", lognormal(30, 2 * MS, 0.05, seed=14), lognormal(30, 2 * MS, 0.05, seed=15))
        assert v.status == "no change"
        assert v.ci_low < 0 < v.ci_high

    def test_flags_improvement(self):
        """A 30% faster candidate is an improvement, with the p-value of the faster direction."""
        v = compare_samples(
            "net", lognormal(30, 2 * MS, 0.05, seed=16), lognormal(30, 1.4 * MS, 0.05, seed=17)
        )
        assert v.status == "improvement"
        assert v.change < -0.10
        assert v.p_value < 0.01

    def test_inconclusive_under_min_samples(self):
        """Fewer than 9 rounds on either side is inconclusive even for a doubling."""
        base = lognormal(30, 2 * MS, 0.05, seed=18)
        cand = lognormal(8, 4 * MS, 0.05, seed=19)
        assert compare_samples("net", base, cand).status == "inconclusive"
        assert compare_samples("net", base, cand, min_samples=8).status == "regression"

    def test_significant_but_small_is_no_change(self):
        """A consistent 3% slowdown is significant with many rounds, but below min_effect: "no change"."""
        base = lognormal(2000, 2 * MS, 0.02, seed=20)
        cand = lognormal(2000, 2.06 * MS, 0.02, seed=21)
        v = compare_samples("net", base, cand)
        assert v.p_value < 1e-6
        assert 0.02 < v.change < 0.04
        assert v.status == "no change"
        assert compare_samples("net", base, cand, min_effect=0.02).status == "regression"

    def test_large_but_not_significant_is_no_change(self):
        """A 15% median shift that the overlapping samples cannot back up is "no change"."""
        base = np.arange(1, 11) * MS
        cand = base * 1.15
        v = compare_samples("net", base, cand)
        assert v.change == pytest.approx(0.15)
        assert v.p_value > 0.01
        assert v.status == "no change"

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"alpha": 0.0}, "alpha"),
            ({"min_effect": -0.1}, "min_effect"),
            ({"min_samples": 1}, "min_samples"),
        ],
    )
    def test_rejects_bad_settings(self, kwargs, match):
        """Out-of-range settings raise an error naming the setting."""
        with pytest.raises(ValueError, match=match):
            compare_samples("net", [1.0] * 10, [1.0] * 10, **kwargs)

    def test_rejects_negative_latency(self):
        """Negative timings are an error naming the benchmark and side."""
        with pytest.raises(ValueError, match="net: candidate"):
            compare_samples("net", [1.0] * 10, [-1.0] * 10)


class TestCheckRatioBudget:
    def test_passes_under_budget(self):
        """A ratio of about 1.2 passes a 1.5 budget."""
        den = lognormal(50, 2 * MS, 0.1, seed=22)
        r = check_ratio_budget("int8/fp32", lognormal(50, 2.4 * MS, 0.1, seed=23), den, 1.5)
        assert r.passed
        assert r.ratio < 1.5
        assert "<= budget" in r.reason

    def test_passes_when_ci_straddles_budget(self):
        """A median just over budget with a CI reaching below it is not evidence of a breach."""
        den = lognormal(12, 2 * MS, 0.3, seed=24)
        num = lognormal(12, 3.15 * MS, 0.3, seed=25)
        r = check_ratio_budget("int8/fp32", num, den, 1.5)
        assert r.ratio > 1.5
        assert r.ci_low <= 1.5 < r.ci_high
        assert r.passed
        assert "not conclusive" in r.reason

    def test_fails_when_ci_wholly_above(self):
        """A ratio of about 2 with 200 rounds a side fails a 1.5 budget."""
        den = lognormal(200, 2 * MS, 0.1, seed=26)
        r = check_ratio_budget("int8/fp32", lognormal(200, 4 * MS, 0.1, seed=27), den, 1.5)
        assert not r.passed
        assert r.ci_low > 1.5
        assert "whole" in r.reason
        assert (r.name, r.budget) == ("int8/fp32", 1.5)

    def test_rejects_non_positive_budget(self):
        """A budget of 0 is an error naming the check."""
        with pytest.raises(ValueError, match="int8/fp32: budget"):
            check_ratio_budget("int8/fp32", [1.0, 2.0], [1.0, 2.0], 0)


def drifting_pairs(n: int, change: float, seed: int, drift: float = 0.3, noise: float = 0.02):
    """Block medians of a paired run: a large shared drift per block, small independent noise."""
    rng = np.random.default_rng(seed)
    shared = 2 * MS * rng.lognormal(0.0, drift, n)
    base = shared * rng.lognormal(0.0, noise, n)
    return base, shared * (1 + change) * rng.lognormal(0.0, noise, n)


class TestPaired:
    def test_paired_ci_is_narrower_than_unpaired_under_drift(self):
        """Shared drift cancels in the per-block ratios: the paired CI is several times narrower."""
        base, cand = drifting_pairs(30, 0.05, seed=40)
        _, plo, phi = paired_ratio_ci(base, cand)
        _, ulo, uhi = bootstrap_ratio_ci(cand, base)
        assert plo <= 1.05 <= phi
        assert (phi - plo) * 4 < uhi - ulo

    def test_paired_verdict_sees_5_percent_under_drift_that_hides_it_unpaired(self):
        """A 5% slowdown under 30% drift: a paired regression, invisible to Mann-Whitney."""
        base, cand = drifting_pairs(30, 0.05, seed=41)
        assert compare_paired("net", base, cand).status == "regression"
        assert mann_whitney_slower(base, cand) > 0.01
        assert wilcoxon_slower(base, cand) < 1e-4

    def test_paired_a_a_is_no_change(self):
        """The same distribution on both sides of each pair is no change."""
        base, cand = drifting_pairs(30, 0.0, seed=42)
        v = compare_paired("net", base, cand)
        assert v.status == "no change" and v.paired
        assert v.ci_low <= 0 <= v.ci_high

    def test_one_wild_block_does_not_move_the_estimate(self):
        """One block ruined by a neighbour (ratio 2) moves the robust paired estimate by under 1%."""
        base, cand = drifting_pairs(30, 0.0, seed=43)
        clean = paired_ratio_ci(base, cand)[0]
        cand = cand.copy()
        cand[7] *= 2
        assert abs(paired_ratio_ci(base, cand)[0] - clean) < 0.01

    def test_signed_rank_interval_inverts_the_wilcoxon_test(self):
        """Its low end is above 1 exactly when the exact one-sided Wilcoxon p is at most the tail, at
        every confidence, and its ratio is the paired (Hodges-Lehmann) ratio."""
        rng = np.random.default_rng(44)
        for trial in range(300):
            n = int(rng.integers(5, 41))
            base, cand = drifting_pairs(n, float(rng.choice([0.0, 0.01, 0.02])), seed=1000 + trial)
            confidence = float(rng.choice([0.9, 0.95, 0.99, 0.999]))
            ratio, low, high = signed_rank_ratio_ci(base, cand, confidence=confidence)
            assert (low > 1) == (wilcoxon_slower(base, cand) <= (1 - confidence) / 2)
            assert low <= ratio <= high
            assert ratio == pytest.approx(paired_ratio_ci(base, cand, n_boot=1)[0], rel=1e-12)  # point only

    def test_signed_rank_interval_is_unbounded_below_the_smallest_p(self):
        """Too few pairs for the confidence (2**-8 > 0.0005) give (0, inf), not the data's range, which
        the bootstrap returns there (measured: a BCa 99.92 % interval of 8 pairs excluded 1 at p = 1)."""
        base, cand = drifting_pairs(8, 0.0, seed=45)
        assert signed_rank_ratio_ci(base, cand, confidence=0.999)[1:] == (0.0, float("inf"))
        assert np.isfinite(signed_rank_ratio_ci(base, cand, confidence=0.99)[2])

    def test_paired_needs_equal_lengths_and_positive_times(self):
        """Unequal lengths or zero latencies are errors naming the benchmark."""
        with pytest.raises(ValueError, match="net: paired samples need one"):
            compare_paired("net", [1.0] * 10, [1.0] * 9)
        with pytest.raises(ValueError, match="net: paired ratios need latencies > 0"):
            compare_paired("net", [1.0] * 10, [0.0] * 10)

    def test_ratios_divide_pairwise(self):
        """paired_ratios is cand[i] / base[i]."""
        assert paired_ratios([1.0, 2.0], [1.5, 1.0]).tolist() == [1.5, 0.5]

    def test_paired_budget_fails_a_15_percent_breach_the_unpaired_check_misses(self):
        """Budget 1.10 x a ratio of 1, candidate 1.15 under drift: paired fails it, unpaired cannot tell."""
        base, cand = drifting_pairs(30, 0.15, seed=44)
        paired = check_ratio_budget("b", cand, base, 1.10, paired=True)
        unpaired = check_ratio_budget("b", cand, base, 1.10)
        assert not paired.passed and "paired ratio" in paired.reason
        assert unpaired.passed
