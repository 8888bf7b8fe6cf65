"""The sequential three-way verdict (detbench.perf.sequential): its decision rule on synthetic block
medians, its caps, Holm's correction, its record, and one real run of the timing core."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from detbench.jsonsafe import dumps
from detbench.perf.sequential import (
    NO_REGRESSION,
    REGRESSION,
    UNKNOWN,
    SequentialRule,
    SequentialVerdict,
    compare_sequential,
    holm,
    holm_adjust,
    run_sequential,
    simulate,
    synthetic_pairs,
)
from detbench.perf.timing import BlockPlan
from detbench.schema import from_json, problems

ALPHA = 0.01


def verdict(name: str, outcome: str, p_adjusted: float) -> SequentialVerdict:
    return SequentialVerdict(
        name=name,
        outcome=outcome,
        ratio=1.2,
        ci_low=1.1,
        ci_high=1.3,
        confidence=0.999,
        p_value=p_adjusted / 19,
        p_adjusted=p_adjusted,
        alpha=ALPHA,
        min_effect=0.03,
        blocks=12,
        looks=1,
        looks_planned=19,
        seconds=3.0,
        reason="p < 0.00053 (alpha 0.01 over 19 looks)",
    )


class TestRule:
    def test_looks_split_alpha_and_set_the_confidence(self) -> None:
        """The default rule looks at 12, 14, ... 48 blocks: 19 looks, alpha / 19 each, both ends at it."""
        rule = SequentialRule()
        assert rule.looks == tuple(range(12, 49, 2))
        assert rule.alpha_look == pytest.approx(ALPHA / 19)
        assert rule.confidence == pytest.approx(1 - 2 * ALPHA / 19)

    def test_a_cap_off_the_look_grid_is_refused(self) -> None:
        """A block cap the looks cannot land on would silently lower the cap: refused."""
        with pytest.raises(ValueError, match="multiple of look_every"):
            SequentialRule(min_blocks=12, max_blocks=17, look_every=2)


class TestDecision:
    def test_identical_distributions_almost_never_regress(self) -> None:
        """A/A under the default rule (min effect 3 %), 5 % sd per block log ratio: 400 seeded runs
        give no regression (measured: 0 regression, 292 no regression, 108 unknown)."""
        counts = simulate(SequentialRule(), change=0.0, sigma=0.05, trials=400, seed=1)
        assert counts[REGRESSION] / 400 < ALPHA
        assert counts[NO_REGRESSION] > 100

    def test_the_looks_are_corrected(self) -> None:
        """A/A with min effect 0, so only the test guards: 7 looks (12..24 blocks) of 400 runs flag
        3 (0.75 % < alpha); with alpha undivided at every look the same runs flag 10 (2.5 %)."""
        counts = simulate(SequentialRule(min_effect=0.0, max_blocks=24), change=0.0, sigma=0.05, trials=400)
        assert counts[REGRESSION] / 400 < ALPHA

    def test_a_20_percent_slowdown_is_a_regression_at_the_first_look(self) -> None:
        """+20 % with 5 % sd per block: every one of 50 runs says regression after 12 blocks."""
        rng = np.random.default_rng(2)
        for _ in range(50):
            v = run_sequential(synthetic_pairs(0.2, 0.05, rng), SequentialRule())
            assert (v.outcome, v.blocks, v.looks) == (REGRESSION, 12, 1)
            assert v.ci_low > 1 and v.p_adjusted < ALPHA  # measured: the lowest low end 1.075

    def test_a_small_change_below_the_min_effect_is_no_regression(self) -> None:
        """+1 % against a 5 % min effect, 3 % sd per block: no regression in 50 of 50 runs, before the
        cap (measured: all by 24 blocks of the 48 allowed)."""
        rule = SequentialRule(min_effect=0.05)
        rng = np.random.default_rng(3)
        runs = [run_sequential(synthetic_pairs(0.01, 0.03, rng), rule) for _ in range(50)]
        assert {v.outcome for v in runs} == {NO_REGRESSION}
        assert max(v.blocks for v in runs) < rule.max_blocks
        assert all(v.ci_high < 1.05 for v in runs)

    def test_the_block_cap_gives_unknown(self) -> None:
        """Blocks too noisy (50 % sd) for 20 pairs to place the change on either side of the min effect:
        unknown at the cap, every planned look taken."""
        rule = SequentialRule(min_effect=0.05, max_blocks=20)
        v = run_sequential(synthetic_pairs(0.0, 0.5, np.random.default_rng(4)), rule)
        assert (v.outcome, v.blocks, v.looks, v.looks_planned) == (UNKNOWN, 20, 5, 5)
        assert v.reason.startswith("block cap")

    def test_the_time_cap_stops_before_a_look_that_would_pass_it(self) -> None:
        """At 1 s per block pair, a 15 s cap takes the looks at 12 and 14 blocks and skips 16."""
        now = [0.0]
        draw = synthetic_pairs(0.0, 0.5, np.random.default_rng(5))

        def timed(k: int) -> tuple[np.ndarray, np.ndarray]:
            now[0] += k
            return draw(k)

        rule = SequentialRule(min_effect=0.05)
        v = run_sequential(timed, rule, max_seconds=15, clock=lambda: now[0])
        assert (v.outcome, v.blocks, v.looks, v.seconds) == (UNKNOWN, 14, 2, 14.0)
        assert v.reason == "time cap: 15 s would pass before 16 blocks/side"

    def test_a_draw_of_the_wrong_size_is_an_error(self) -> None:
        """A block source that returns fewer pairs than asked for is refused, not judged."""
        with pytest.raises(ValueError, match="expected 12"):
            run_sequential(lambda k: (np.ones(k - 1), np.ones(k - 1)), SequentialRule())


class TestHolm:
    def test_textbook_example(self) -> None:
        """Holm's example (Wikipedia): p 0.01, 0.04, 0.03, 0.005 at alpha 0.05 reject the first and last
        only; adjusted p 0.03, 0.06, 0.06, 0.02."""
        adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005])
        assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
        assert [p < 0.05 for p in adjusted] == [True, False, False, True]

    def test_adjusted_p_values_keep_their_order_and_stay_at_most_one(self) -> None:
        """The step-down is monotone in the raw p and capped at 1."""
        assert holm_adjust([0.5, 0.4, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
        assert holm_adjust([]) == []
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            holm_adjust([0.1, float("nan")])

    def test_a_weak_regression_does_not_survive_many_benchmarks(self) -> None:
        """Three benchmarks: the strong regression stays, the one at p 0.006 (enough alone) is demoted
        to unknown with the reason; no regression is left alone, its p adjusted too."""
        strong, weak, fine = holm(
            [
                verdict("a", REGRESSION, 0.001),
                verdict("b", REGRESSION, 0.006),
                verdict("c", NO_REGRESSION, 0.8),
            ]
        )
        assert (strong.outcome, strong.p_adjusted) == (REGRESSION, pytest.approx(0.003))
        assert (weak.outcome, weak.p_adjusted) == (UNKNOWN, pytest.approx(0.012))
        assert "not after Holm over 3 benchmarks" in weak.reason
        assert (fine.outcome, fine.p_adjusted) == (NO_REGRESSION, pytest.approx(0.8))
        assert holm([verdict("b", REGRESSION, 0.006)])[0].outcome == REGRESSION


class TestRecord:
    def test_describe_names_ratio_and_interval(self) -> None:
        """The one-line CI message has the benchmark, outcome, ratio, change, interval and blocks."""
        line = verdict("test_latency[onnxruntime]", REGRESSION, 0.001).describe()
        assert "\n" not in line
        assert line.startswith("test_latency[onnxruntime]: regression: candidate/baseline 1.200 (+20.0%;")
        assert "99.90% CI 1.100-1.300" in line and "after 12 blocks/side, 3.0 s" in line

    def test_json_matches_its_schema_and_reads_back(self) -> None:
        """An unknown verdict with an unbounded interval writes the high end as null."""
        v = run_sequential(
            synthetic_pairs(0.0, 0.05, np.random.default_rng(6)),
            SequentialRule(min_blocks=4, max_blocks=4, min_effect=0.0),
        )
        assert v.outcome == UNKNOWN and v.ci_high == math.inf and "CI 0.000-inf" in v.describe()
        doc = json.loads(dumps(v))
        assert problems(doc, SequentialVerdict) == [] and doc["ci_high"] is None
        assert from_json(SequentialVerdict, doc).ratio == v.ratio


class TestOnTheTimingCore:
    def test_blocks_keep_the_schedule_across_looks(self) -> None:
        """Chunks of one and two rounds continue A B B A ... as block_schedule orders one long run."""
        order: list[str] = []
        plan = BlockPlan(blocks=6, block_calls=2, discard=1, settle_s=0.0)
        v = compare_sequential(
            lambda: order.append("a"), lambda: order.append("b"), plan=plan, min_blocks=3, look_every=1,
            min_effect=1e9,
        )  # fmt: skip
        assert v.outcome == UNKNOWN and v.blocks == 6
        blocks = "".join(order[::2])  # two calls a block
        assert blocks == "ab" + "ba" + "ab" + "ba" + "ab" + "ba"

    @pytest.mark.timing
    def test_twice_the_work_is_a_regression_within_seconds(self) -> None:
        """Two small numpy matrix products against one: regression at the first look, in seconds."""
        x = np.random.default_rng(7).random((96, 96))

        def once() -> object:
            return x @ x

        def twice() -> object:
            return (x @ x) @ x

        plan = BlockPlan(blocks=24, block_calls=25, discard=5, settle_s=0.01)
        v = compare_sequential(once, twice, plan=plan, name="matmul", max_seconds=10)
        assert v.outcome == REGRESSION, v.describe()
        assert v.ratio > 1.3 and v.seconds < 10
