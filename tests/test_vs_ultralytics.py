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


class _FakeYOLO:
    """ultralytics' export as it lays files out: beside the weights, and ``int8=True`` on ONNX deletes
    the fp32 file it quantized (``Exporter.export_onnx``)."""

    def __init__(self, weights: str) -> None:
        self.weights = Path(weights)

    def export(
        self, *, format: str, imgsz: int, device: str, int8: bool = False, data: str | None = None
    ) -> str:
        stem, folder = self.weights.stem, self.weights.parent
        if format == "onnx":
            fp32 = folder / f"{stem}.onnx"
            fp32.write_bytes(b"fp32")
            if not int8:
                return str(fp32)
            assert data is not None  # calibration data
            q = folder / f"{stem}_int8.onnx"
            q.write_bytes(b"int8")
            fp32.unlink()
            return str(q)
        out = folder / f"{stem}_{'int8_' if int8 else ''}openvino_model"
        out.mkdir()
        return str(out)


def test_peer_exports_keep_every_file_and_include_int8_with_calibration_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With calibration data the peer gets each format at default and int8=True, every export still on
    disk when they are timed (ultralytics' ONNX int8 export deletes the fp32 file beside it); without,
    the default exports only."""
    import ultralytics

    import detbench.runtimes.export

    monkeypatch.setattr(ultralytics, "YOLO", _FakeYOLO)
    monkeypatch.setattr(detbench.runtimes.export, "openvino_available", lambda: True)
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"w")
    (tmp_path / "a").mkdir()
    plain = vs["ultralytics_exports"](weights, 128, tmp_path / "a")
    assert [(e.fmt, e.int8) for e in plain] == [("onnx", False), ("openvino", False)]
    (tmp_path / "b").mkdir()
    both = vs["ultralytics_exports"](weights, 128, tmp_path / "b", tmp_path / "data.yaml")
    assert [(e.fmt, e.int8) for e in both] == [
        ("onnx", False),
        ("onnx", True),
        ("openvino", False),
        ("openvino", True),
    ]
    assert all(e.path.exists() for e in both)
    assert len({e.path for e in both}) == 4


def test_peer_int8_exports_run_on_the_int8_backends() -> None:
    """ultralytics' int8=True exports are labelled (and re-run by detbench) as the INT8 backends."""
    PeerExport, backend = vs["PeerExport"], vs["peer_backend"]
    assert backend(PeerExport("onnx", False, Path("m.onnx")), 128) == "onnxruntime"
    assert backend(PeerExport("onnx", True, Path("m_int8.onnx")), 128) == "onnxruntime-int8"
    assert backend(PeerExport("openvino", True, Path("m_int8_openvino_model")), 128) == "openvino-int8"
