"""The steady-state timing core: block schedule, discarded warm-up calls, per-block medians, plans."""

from __future__ import annotations

import time

import numpy as np
import pytest

from detbench.perf.timing import (
    Agreement,
    BlockPlan,
    alone,
    alternated_blocks,
    block_medians,
    block_schedule,
    blocked_vs_alone,
    plan_blocks,
    steady_state,
    time_block,
)


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class TestBlockSchedule:
    def test_rounds_alternate_forward_and_reversed(self) -> None:
        """Three callables, four blocks each: A B C C B A A B C C B A."""
        assert block_schedule(3, 4) == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]

    def test_each_callable_gets_every_block(self) -> None:
        """Every callable appears exactly ``blocks`` times, and as often early as late over two rounds."""
        order = block_schedule(4, 6)
        assert [order.count(i) for i in range(4)] == [6] * 4
        positions = {i: [r_pos for r_pos, j in enumerate(order) if j == i] for i in range(4)}
        mean_slot = {i: np.mean([p % 4 for p in pos]) for i, pos in positions.items()}
        assert len(set(mean_slot.values())) == 1

    @pytest.mark.parametrize(("n", "blocks"), [(0, 3), (2, 0)])
    def test_rejects_empty(self, n: int, blocks: int) -> None:
        """No callables or no blocks is an error, not an empty measurement."""
        with pytest.raises(ValueError, match=r"at least one|blocks"):
            block_schedule(n, blocks)


class TestSteadyState:
    def test_calls_in_blocks_and_drops_each_blocks_first_calls(self) -> None:
        """Calls run in consecutive blocks in the A B B A order; the discarded calls are not timed."""
        order: list[str] = []
        a, b = steady_state(
            [lambda: order.append("a"), lambda: (order.append("b"), spin(2e-4))],
            blocks=4,
            block_calls=3,
            discard=1,
            settle_s=0,
        )
        assert "".join(order) == "aaabbbbbbaaaaaabbbbbbaaa"
        assert a.shape == b.shape == (4 * 2,)
        assert np.all(b >= 2e-4)
        assert np.all(a < b.min())

    def test_discarded_slow_calls_are_not_in_the_samples(self) -> None:
        """A callable slow on the first call of each block (a cold cache) reads as its fast steady state."""
        state = {"calls": 0}

        def cold_then_warm() -> None:
            spin(5e-3 if state["calls"] % 5 == 0 else 1e-4)
            state["calls"] += 1

        (x,) = steady_state([cold_then_warm], blocks=3, block_calls=5, discard=1, settle_s=0)
        assert x.size == 12
        assert x.max() < 4e-3

    def test_on_block_reports_kept_calls(self) -> None:
        """on_block is called once per block with the number of calls kept from it."""
        seen: list[int] = []
        steady_state([lambda: None, lambda: None], blocks=3, block_calls=6, discard=2, on_block=seen.append)
        assert seen == [4] * 6

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"blocks": 0}, "blocks"),
            ({"block_calls": 5, "discard": 5}, "exceed discard"),
            ({"discard": -1}, "discard"),
            ({"settle_s": -0.1}, "settle_s"),
        ],
    )
    def test_rejects_bad_plans(self, kwargs: dict, match: str) -> None:
        """A plan that keeps no calls is an error naming the setting."""
        with pytest.raises(ValueError, match=match):
            steady_state([lambda: None], **kwargs)

    def test_rejects_no_callables(self) -> None:
        """Nothing to time is an error."""
        with pytest.raises(ValueError, match="at least one"):
            steady_state([])

    def test_alone_keeps_as_many_calls_as_steady_state(self) -> None:
        """alone() times the same number of calls, all consecutive after the warm-up."""
        calls = []
        x = alone(lambda: calls.append(1), blocks=3, block_calls=6, discard=2, settle_s=0)
        assert x.size == 12 and len(calls) == 14

    def test_settle_time_stretches_each_blocks_warm_up(self) -> None:
        """A block's untimed start lasts settle_s even when discard calls are quicker than that."""
        calls = []
        t0 = time.perf_counter()
        (x,) = steady_state(
            [lambda: calls.append(spin(1e-4))], blocks=2, block_calls=4, discard=1, settle_s=0.02
        )
        assert time.perf_counter() - t0 >= 0.04
        assert x.size == 6 and len(calls) > 2 * 4 + 40  # about 0.02 s / 0.1 ms untimed calls a block


class TestBlockMedians:
    def test_median_of_each_block(self) -> None:
        """Block k's median comes from block k's samples only."""
        x = np.array([1.0, 2.0, 9.0, 10.0, 20.0, 30.0])
        np.testing.assert_allclose(block_medians(x, 3), [1.5, 9.5, 25.0])

    def test_pairs_real_blocks(self) -> None:
        """Per-block medians of a steady_state sample pair blocks of the same index (one per block)."""
        a, b = steady_state([lambda: spin(1e-4), lambda: spin(3e-4)], blocks=4, block_calls=4, discard=1)
        ratio = block_medians(b, 4) / block_medians(a, 4)
        assert ratio.shape == (4,) and np.all(ratio > 1.5)

    def test_rejects_ragged_split(self) -> None:
        """Samples that do not split into equal blocks are an error."""
        with pytest.raises(ValueError, match="equal blocks"):
            block_medians(np.ones(7), 2)


class TestPlanBlocks:
    @pytest.mark.parametrize(
        ("calls", "plan"), [(4, (2, 7, 5)), (40, (2, 25, 5)), (160, (8, 25, 5)), (150, (8, 24, 5))]
    )
    def test_plans_at_least_the_asked_calls(self, calls: int, plan: tuple[int, int, int]) -> None:
        """At least two blocks of at most 20 kept calls, keeping at least ``calls`` calls in all."""
        assert plan_blocks(calls) == plan
        blocks, block_calls, discard = plan
        assert blocks * (block_calls - discard) >= calls

    def test_rejects_zero(self) -> None:
        """Zero calls is an error."""
        with pytest.raises(ValueError, match="calls"):
            plan_blocks(0)


class TestBlockSeam:
    def test_time_block_settles_then_times_kept_calls(self) -> None:
        """A block calls ``discard`` untimed, then returns one positive nanosecond count per kept call."""
        calls: list[int] = []
        ns = time_block(lambda: calls.append(1), 4, 3, 0.0)
        assert (len(calls), ns.dtype, ns.size, bool(np.all(ns > 0))) == (7, np.int64, 4, True)

    def test_alternated_blocks_schedules_outside_runners(self) -> None:
        """Runners that return their own block's nanoseconds (a worker process's) are run A B B A and
        their samples come back in seconds, block after block."""
        order: list[str] = []

        def runner(name: str, ns: int):
            return lambda: order.append(name) or [ns, ns]

        seen: list[int] = []
        a, b = alternated_blocks([runner("a", 1000), runner("b", 3000)], 2, on_block=seen.append)
        assert order == ["a", "b", "b", "a"] and seen == [2] * 4
        assert a.tolist() == [1e-6] * 4 and b.tolist() == [3e-6] * 4


class TestBlockPlan:
    @pytest.mark.parametrize(
        ("plan", "counts"),
        [
            (BlockPlan.DEFAULT, (8, 25, 5)),
            (BlockPlan.TUNE, (8, 25, 5)),
            (BlockPlan.TUNE_QUICK, (4, 20, 5)),
            (BlockPlan.GATE, (12, 30, 5)),
            (BlockPlan.GATE_REFERENCE, (48, 30, 5)),
            (BlockPlan.SEQUENTIAL, (48, 30, 5)),
            (BlockPlan.SEQUENTIAL_QUICK, (24, 12, 2)),
            (BlockPlan.BUDGETS, (16, 15, 5)),
            (BlockPlan.BUDGETS_RECORD, (40, 15, 5)),
        ],
    )
    def test_presets_keep_their_counts(self, plan: BlockPlan, counts: tuple[int, int, int]) -> None:
        """Each named preset has the counts its callers used before the presets existed, settle included."""
        assert (plan.blocks, plan.block_calls, plan.discard, plan.settle_s) == (*counts, 0.1)

    def test_covering_is_plan_blocks(self) -> None:
        """The report's plan for a number of calls is ``plan_blocks``'s, with the kept total it implies."""
        plan = BlockPlan.covering(150)
        assert (plan.blocks, plan.block_calls, plan.discard) == plan_blocks(150)
        assert plan.kept == 8 * 19 and plan.to_dict() == {"blocks": 8, "block_calls": 24, "discard": 5}

    def test_an_invalid_plan_cannot_be_built(self) -> None:
        """Block calls that do not exceed the discarded ones are refused at construction."""
        with pytest.raises(ValueError, match="exceed discard"):
            BlockPlan(blocks=2, block_calls=5, discard=5)

    def test_runs_the_core_with_its_counts(self) -> None:
        """``plan.steady_state`` keeps blocks x (block_calls - discard) calls per callable."""
        seen: list[int] = []
        (x,) = BlockPlan(3, 6, 2, settle_s=0).steady_state([lambda: None], on_block=seen.append)
        assert x.size == 12 and seen == [4, 4, 4]
        assert BlockPlan.GATE.with_blocks(None) is BlockPlan.GATE
        assert BlockPlan.GATE.with_blocks(3).blocks == 3


class TestBlockedVsAlone:
    def test_agreement_of_pure_python_callables(self) -> None:
        """Two busy-waits keep their own durations blocked beside each other (no runtime threads)."""
        res = blocked_vs_alone(
            [lambda: spin(2e-4), lambda: spin(6e-4)], rounds=2, blocks=2, block_calls=8, discard=2
        )
        assert [r.blocked_p50_s > 0 and r.alone_p50_s > 0 for r in res] == [True, True]
        assert res[1].alone_p50_s > 2 * res[0].alone_p50_s
        assert all(abs(r.diff) < 0.5 for r in res)

    def test_diff_is_the_median_round_ratio(self) -> None:
        """diff is the median over rounds of blocked / alone, minus 1: one disturbed round is outvoted."""
        a = Agreement(alone_p50_s=2.0, blocked_p50_s=2.5, round_ratios=(1.25, 1.2, 3.0))
        assert a.diff == pytest.approx(0.25)
