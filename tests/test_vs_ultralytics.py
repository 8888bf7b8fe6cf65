"""scripts/vs_ultralytics.py --e2e without models: round order, the paired summary, its last line, and
the detection agreement (the real run is a script run, README "Per-image pipeline")."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

from detbench.runtimes.postprocess import Detections

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "vs_ultralytics.py"
vs = runpy.run_path(str(SCRIPT), run_name="vs_ultralytics")
Contender = vs["Contender"]


def _timed(side: str, backend: str, rounds_ms: list[list[float]]) -> object:
    c = Contender(side, backend, lambda p: None)
    c.rounds = [np.asarray(r) / 1e3 for r in rounds_ms]
    return c


def test_rounds_alternate_the_contenders_and_settle_before_each_pass() -> None:
    """One pass per contender per round, A B B A order; each pass after one untimed settle call."""
    log: list[str] = []
    cs = [Contender(n, "x", lambda p, n=n: log.append(n)) for n in ("u", "d")]
    vs["e2e_rounds"](cs, [Path("a"), Path("b")], 2, 0.0)
    assert log == ["u"] * 3 + ["d"] * 3 + ["d"] * 3 + ["u"] * 3
    assert [len(c.rounds) for c in cs] == [2, 2] and cs[0].rounds[0].shape == (2,)


def test_summary_pairs_each_sides_fastest_by_round_and_prints_the_last_line() -> None:
    """The fastest contender per side; ratio ultralytics / detbench from per-round medians; the line's
    exact form."""
    cs = [
        _timed("ultralytics", "onnxruntime", [[30, 30], [31, 31], [29, 29]]),
        _timed("ultralytics", "openvino", [[10, 10], [12, 12], [11, 11]]),
        _timed("detbench", "onnxruntime", [[20, 20], [20, 20], [20, 20]]),
        _timed("detbench", "openvino", [[5, 5], [6, 6], [5.5, 5.5]]),
    ]
    s = vs["e2e_summary"](cs)
    assert (s.ultralytics, s.detbench) == ("ultralytics openvino", "detbench openvino")
    assert s.round_ratios == pytest.approx((2.0, 2.0, 2.0))
    assert s.ratio == pytest.approx(2.0) and s.low <= 2.0 <= s.high
    assert s.line() == "e2e: ultralytics 11.00 ms/image, detbench 5.50 ms/image, ratio 2.00 [2.00, 2.00]"


def _dets(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(classes, np.int64),
        ("a", "b"),
    )


def test_agreement_counts_matches_and_flags_a_class_swap() -> None:
    """Same boxes agree; a box whose class differs is unmatched on both sides and reported as DIFFER."""
    ref = [_dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 1])]
    ok, text = vs["agreement"](ref, ref, "pillow")
    assert ok and "2 matched" in text and "0 unmatched" in text
    swapped = [_dets([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 0])]
    ok, text = vs["agreement"](ref, swapped, "pillow")
    assert not ok and "1 matched" in text and "2 unmatched" in text and "DIFFER" in text


def test_recommended_contender_runs_the_specs_stages_around_its_backend() -> None:
    """--e2e --tune-json: detbench's side is the spec's StageCalls around its configuration's backend,
    each call's four-stage split kept."""
    from types import SimpleNamespace

    from detbench.perf.pipeline_timing import STAGES
    from detbench.runtimes.pipeline import StageCalls

    backend = SimpleNamespace(run=lambda x: x * 2)
    calls = StageCalls(
        "fake", lambda p: p.name, lambda name: (np.array([len(name)]), name), lambda raw, s: (raw, s)
    )
    spec = SimpleNamespace(config=SimpleNamespace(backend="fake", load=lambda: backend), calls=lambda: calls)
    c = vs["recommended_contender"](spec)
    raw, state = c.call(Path("abc.jpg"))
    assert c.label == "detbench recommended fake"
    assert raw.tolist() == [14] and state == "abc.jpg"  # the backend's output reached postprocess
    assert list(c.split[0]) == list(STAGES)


def test_e2e_tune_json_refuses_a_decode_and_a_wrong_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--decode with --tune-json, and a file that is no tune.json: usage errors before any model loads."""
    bad = tmp_path / "tune.json"
    bad.write_text('{"schema": 0}')
    with pytest.raises(SystemExit) as exc:
        vs["main"](["--e2e", "--tune-json", str(bad), "--decode", "opencv"])
    assert exc.value.code == 2 and "runs the decode variant tune.json recommends" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        vs["main"](["--e2e", "--tune-json", str(bad)])
    assert exc.value.code == 2 and "not a tune.json of schema" in capsys.readouterr().err
