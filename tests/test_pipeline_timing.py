"""The per-image pipeline timed warm: cold pass apart, blocks alternated, settles, medians (fake clock)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from detbench.perf import pipeline_timing
from detbench.perf.measure import measure_stages
from detbench.perf.pipeline_timing import StagePlan, StageTimes, pipeline_stages, time_image
from detbench.runtimes.pipeline import StageCalls, stage_calls

MS = 1_000_000  # fake clock ticks are nanoseconds
IMAGES = [Path(f"img{i}.jpg") for i in range(4)]
COLD_MS, SWITCH_MS, WARM_MS = 100, 50, 2


class _Rig:
    """A fake clock and backends: decode 3 ms, preprocess 2 ms, postprocess 1 ms; a backend's call
    takes COLD_MS for its first len(IMAGES) calls, SWITCH_MS when another backend ran last (its
    threads still spinning), else WARM_MS. Every call is logged."""

    def __init__(self) -> None:
        self.now = 0
        self.calls: dict[str, int] = {}
        self.last: str | None = None
        self.log: list[str] = []

    def clock(self) -> int:
        return self.now

    def backend(self, name: str):
        def run(x: np.ndarray) -> np.ndarray:
            k = self.calls[name] = self.calls.get(name, 0) + 1
            ms = COLD_MS if k <= len(IMAGES) else SWITCH_MS if self.last != name else WARM_MS
            self.now += ms * MS
            self.last = name
            self.log.append(name)
            return x

        return run

    def pipeline(self, decode_ms: int = 3) -> StageCalls:
        def step(ms: int, out):
            self.now += ms * MS
            return out

        return StageCalls(
            "fake",
            lambda p: step(decode_ms, p),
            lambda img: step(2, (np.zeros(1), img)),
            lambda raw, state: step(1, state),
        )


PLAN = StagePlan(warm_passes=3, settle_calls=1, settle_s=0.0)


def _measure(rig: _Rig, names=("a", "b")) -> dict[str, StageTimes]:
    return pipeline_stages({n: rig.backend(n) for n in names}, rig.pipeline(), IMAGES, PLAN, clock=rig.clock)


def _warm_is_steady(times: dict[str, StageTimes]) -> None:
    """The check both tests below share: every warm inference is the steady WARM_MS."""
    for t in times.values():
        np.testing.assert_array_equal(t.warm[:, 2] * 1e3, WARM_MS)


class TestPipelineStages:
    def test_time_image_splits_the_four_stages(self) -> None:
        """Decode, preprocess, inference and postprocess each get their own time."""
        rig = _Rig()
        ns, det = time_image(rig.pipeline(), rig.backend("a"), IMAGES[0], rig.clock)
        assert (ns // MS).tolist() == [3, 2, COLD_MS, 1] and det == IMAGES[0]

    def test_cold_pass_is_kept_apart_from_the_warm_passes(self) -> None:
        """The first pass's slow calls land in ``cold`` only; the warm passes see the steady state."""
        times = _measure(_Rig())
        for t in times.values():
            assert t.cold.shape == (len(IMAGES), 4) and t.warm.shape == (PLAN.warm_passes * len(IMAGES), 4)
            np.testing.assert_array_equal(t.cold[:, 2] * 1e3, COLD_MS)
        _warm_is_steady(times)

    def test_the_check_sees_a_timing_without_settle(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Seen failing: with the settle before each block removed, the first image of each block pays
        for the previous backend (SWITCH_MS) and the steadiness check fails."""
        monkeypatch.setattr(pipeline_timing, "settle", lambda fn, calls, seconds: None)
        times = _measure(_Rig())
        with pytest.raises(AssertionError):
            _warm_is_steady(times)
        assert max(t.warm[:, 2].max() for t in times.values()) * 1e3 == SWITCH_MS

    def test_blocks_alternate_between_backends_after_the_cold_passes(self) -> None:
        """Cold passes in order, then one pass per block in A B B A A B order, each after one settle call."""
        rig = _Rig()
        _measure(rig)
        n = len(IMAGES)
        blocks = [rig.log[i] for i in range(2 * n, len(rig.log), n + 1)]  # each block: settle + n images
        assert rig.log[: 2 * n] == ["a"] * n + ["b"] * n
        assert blocks == ["a", "b", "b", "a", "a", "b"]
        assert len(rig.log) == 2 * n + 6 * (n + 1)

    def test_two_pipelines_on_one_backend_alternate_like_backends(self) -> None:
        """One pipeline per entry: two on backend a are two entries, each timed through its own stages,
        their blocks adjacent (a·1 a·2 b·1 b·1 a·2 a·1 ...); an entry without a pipeline is refused."""
        rig = _Rig()
        runs = {("a", 1): rig.backend("a"), ("a", 2): rig.backend("a"), ("b", 1): rig.backend("b")}
        calls = {("a", 1): rig.pipeline(3), ("a", 2): rig.pipeline(7), ("b", 1): rig.pipeline(3)}
        order: list[tuple[str, int]] = []
        times = pipeline_stages(runs, calls, IMAGES, PLAN, clock=rig.clock, on_block=order.append)
        assert {k: float(np.median(t.warm[:, 0])) * 1e3 for k, t in times.items()} == {
            ("a", 1): 3,
            ("a", 2): 7,
            ("b", 1): 3,
        }
        assert order[3:9] == [("a", 1), ("a", 2), ("b", 1), ("b", 1), ("a", 2), ("a", 1)]
        with pytest.raises(ValueError, match="no pipeline for"):
            pipeline_stages(runs, {("a", 1): rig.pipeline()}, IMAGES, PLAN, clock=rig.clock)

    def test_summary_medians(self) -> None:
        """Per-stage medians, decode + preprocess and end to end are medians of per-image sums, in ms."""
        warm = np.array([[1, 2, 3, 4], [3, 1, 5, 1], [2, 4, 4, 2]], dtype=float) / 1e3
        cold = np.array([[10, 0, 0, 0], [30, 0, 0, 0]], dtype=float) / 1e3
        s = StageTimes(cold, warm).summary()
        assert s == pytest.approx(
            {
                "decode_ms": 2,
                "preprocess_ms": 2,
                "decode_preprocess_ms": 4,
                "inference_ms": 4,
                "postprocess_ms": 2,
                "end_to_end_ms": 10,
                "cold_end_to_end_ms": 20,
            }
        )

    def test_invalid_plans_and_inputs_are_refused(self) -> None:
        """No warm pass, a negative settle, no backend or no image: errors, not empty results."""
        with pytest.raises(ValueError, match="warm_passes"):
            StagePlan(warm_passes=0)
        with pytest.raises(ValueError, match="settle"):
            StagePlan(settle_s=-1.0)
        rig = _Rig()
        with pytest.raises(ValueError, match="backend"):
            pipeline_stages({}, rig.pipeline(), IMAGES, PLAN)
        with pytest.raises(ValueError, match="image"):
            pipeline_stages({"a": rig.backend("a")}, rig.pipeline(), [], PLAN)


class _Backend:
    def __init__(self, batch: int | None) -> None:
        self.dynamic_batch = batch is None
        self.spec = SimpleNamespace(batch=batch or 1)

    def run(self, x: np.ndarray) -> np.ndarray:
        return x


def test_measure_stages_reports_warm_medians_and_a_reason_for_fixed_batches() -> None:
    """The report's step: every stage key and the warm passes for a per-image backend; a fixed-batch
    artifact gets its reason and no stage keys."""
    rig = _Rig()
    out = measure_stages(
        {"dyn": _Backend(None), "fixed": _Backend(4)}, IMAGES, 8, ("x",), plan=PLAN, pipeline=rig.pipeline()
    )
    assert out["dyn"]["warm_passes"] == PLAN.warm_passes and out["dyn"]["reason"] is None
    assert set(out["dyn"]) >= {"decode_ms", "preprocess_ms", "end_to_end_ms", "cold_end_to_end_ms"}
    assert out["fixed"] == {"images": 0, "reason": "fixed batch of 4: no per-image pipeline"}


def test_stage_calls_decode_letterbox_and_map_boxes(tmp_path: Path) -> None:
    """A pipeline of registered variants (the references, or a reduced decode with the lean letterbox
    and NumPy NMS) feeds the backend an imgsz letterbox of the file; an unknown variant is refused."""
    from PIL import Image

    path = tmp_path / "p.jpg"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path)
    seen = []

    def run(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        return np.zeros((1, 4 + 2, 21), np.float32)  # no box above the threshold

    for decoder, pre, post in (("pillow", "reference", "ultralytics"), ("opencv-reduced", "lean", "numpy")):
        pipe = stage_calls(32, ("a", "b"), decode=decoder, preprocess=pre, postprocess=post)
        det = pipe(run, path)
        assert len(det) == 0 and det.names == ("a", "b")
    assert seen == [(1, 3, 32, 32)] * 2
    with pytest.raises(ValueError, match="no decode variant 'nope'"):
        stage_calls(32, ("a",), decode="nope")
    with pytest.raises(ValueError, match="no postprocess variant 'nope'"):
        stage_calls(32, ("a",), postprocess="nope")
