"""The report's recommended pipeline on the photos: which variants, admission, timing beside the
reference (fake variants, backends and clock), --tune-json's errors, the records and the rendering."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from detbench import cli
from detbench.errors import DetbenchError
from detbench.perf.pipeline_timing import StagePlan
from detbench.report import steps
from detbench.report.records import Report
from detbench.report.render import (
    STAGE_HEADER,
    deploy_header,
    deployment_rows,
    recommended_pipeline_line,
    render_markdown,
    stage_rows,
)
from detbench.runtimes import pipeline as stages
from detbench.runtimes.decode import Decoded
from detbench.runtimes.pipeline import PipelineVariant
from detbench.runtimes.postprocess import Detections
from detbench.schema import problems
from detbench.tune.records import SCHEMA as TUNE_SCHEMA
from detbench.verify.decode import DECODE_TOLERANCES

IMGSZ = 8
NAMES = ("a", "b")
PHOTOS = [Path(f"photo{i}.jpg") for i in range(3)]  # the fakes never open them
PLAN = StagePlan(warm_passes=2, settle_calls=1, settle_s=0.0)
INFERENCE_MS = 4.0
# Fake cost of each variant per image, ms: the reference pipeline 5 + 2 + 1, every other one less.
COST_MS = {
    "pillow": 5.0,
    "good-reduced": 1.0,
    "bad-reduced": 1.0,
    "fast": 3.0,
    "reference": 2.0,
    "quick": 1.0,
    "ultralytics": 1.0,
    "quick-nms": 0.5,
}
REFERENCE_MS = {"decode": 5.0, "preprocess": 2.0, "postprocess": 1.0}


class Clock:
    """Fake nanoseconds: the fake variants and backends advance it by their cost."""

    def __init__(self) -> None:
        self.ns = 0
        self.calls: dict[str, int] = {}

    def __call__(self) -> int:
        return self.ns

    def spend(self, name: str, ms: float) -> None:
        self.ns += int(ms * 1e6)
        self.calls[name] = self.calls.get(name, 0) + 1


def _decoder(clock: Clock, name: str, factor: int):
    """A 48x64 image; factor 4 stands for a reduced decode that forgets to shrink: its boxes come back
    4x too large, so its detections cannot match the reference's."""

    def decode(path, imgsz) -> Decoded:
        clock.spend(name, COST_MS[name])
        return Decoded(np.zeros((48 // factor, 64 // factor, 3), np.uint8), (48, 64), factor)

    return decode


def _preprocessor(clock: Clock, name: str):
    def pre(image, imgsz):
        clock.spend(name, COST_MS[name])
        return np.zeros((1, 3, IMGSZ, IMGSZ), np.float32), None

    return pre


def _postprocessor(clock: Clock, name: str):
    """One box read from the raw head's first column when its score passes 0.5, else none."""

    def post(raw, infos, names, *, conf, iou, max_det):
        clock.spend(name, COST_MS[name])
        keep = raw[0, 4, :1] > 0.5
        return [
            Detections(
                raw[0, :4, :1].T[keep], raw[0, 4, :1][keep], np.zeros(int(keep.sum()), np.int64), names
            )
        ]

    return post


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A registry of fake variants only, registered so that the first variant after each reference is
    one that does not claim identical output (choosing by position instead of by claim picks it)."""
    c = Clock()
    monkeypatch.setattr(stages, "REGISTRY", {})
    for stage, name, identical, make in (
        ("decode", "pillow", True, lambda: _decoder(c, "pillow", 1)),
        ("decode", "good-reduced", False, lambda: _decoder(c, "good-reduced", 1)),
        ("decode", "bad-reduced", False, lambda: _decoder(c, "bad-reduced", 4)),
        ("decode", "fast", True, lambda: _decoder(c, "fast", 1)),
        ("preprocess", "reference", True, lambda: _preprocessor(c, "reference")),
        ("preprocess", "quick", True, lambda: _preprocessor(c, "quick")),
        ("postprocess", "ultralytics", True, lambda: _postprocessor(c, "ultralytics")),
        ("postprocess", "quick-nms", True, lambda: _postprocessor(c, "quick-nms")),
    ):
        stages.register(PipelineVariant(stage, name, "fake", identical=identical, make=make))
    for name in ("good-reduced", "bad-reduced"):  # the reduced decodes' measured row
        monkeypatch.setitem(DECODE_TOLERANCES, name, DECODE_TOLERANCES["opencv-reduced"])
    return c


class FakeBackend:
    """INFERENCE_MS per call; its raw head has one box at (10, 10, 20, 20) scoring ``score``."""

    def __init__(self, clock: Clock, name: str, score: float = 0.9, batch: int | None = None) -> None:
        self.clock, self.name = clock, name
        self.dynamic_batch = batch is None
        self.spec = SimpleNamespace(batch=batch or 1)
        self.artifact = Path(f"{name}.onnx")
        self.raw = np.zeros((1, 4 + len(NAMES), 1), np.float32)
        self.raw[0, :5, 0] = (10, 10, 20, 20, score)

    def run(self, x: np.ndarray) -> np.ndarray:
        self.clock.spend(self.name, INFERENCE_MS)
        return self.raw.copy()


def _tune_json(path: Path, decode: str, preprocess: str, postprocess: str) -> Path:
    """A small tune.json: the schema and a recommended pipeline (another backend than the report's)."""
    rec = {
        "index": 0,
        "backend": "openvino",
        "threads": 2,
        "artifact": "/elsewhere/model.xml",
        "imgsz": IMGSZ,
        "names": list(NAMES),
        "decode": decode,
        "preprocess": preprocess,
        "postprocess": postprocess,
        "e2e_p50_ms": 1.0,
        "inference_p50_ms": 0.5,
        "reference_e2e_p50_ms": 2.0,
    }
    path.write_text(json.dumps({"schema": TUNE_SCHEMA, "recommended_pipeline": rec}), encoding="utf-8")
    return path


def _measure(clock: Clock, chosen, backends: dict[str, FakeBackend]):
    return steps.measure_photo_pipelines(backends, PHOTOS, IMGSZ, NAMES, 1, chosen, plan=PLAN, clock=clock)


def _stage_ms(row: dict) -> dict[str, float]:
    return {s: row[f"{s}_ms"] for s in ("decode", "preprocess", "inference", "postprocess")}


class TestWhichPipeline:
    def test_default_is_each_stage_s_identical_alternative(self, clock: Clock) -> None:
        """Without --tune-json: per stage the first registered non-reference variant claiming identical
        output, passed over the non-identical decodes registered before it."""
        chosen = steps.photo_pipeline(None)
        assert (chosen.decode, chosen.preprocess, chosen.postprocess) == ("fast", "quick", "quick-nms")
        assert chosen.source == "identical variants" and chosen.tune_json is None and chosen.identical

    def test_tune_json_gives_its_recommended_variants(self, clock: Clock, tmp_path: Path) -> None:
        """--tune-json: the variant names of tune.json's recommended pipeline, said to come from it."""
        path = _tune_json(tmp_path / "tune.json", "good-reduced", "quick", "ultralytics")
        chosen = steps.photo_pipeline(path)
        assert (chosen.decode, chosen.preprocess, chosen.postprocess) == (
            "good-reduced",
            "quick",
            "ultralytics",
        )
        assert chosen.source == "tune.json" and chosen.tune_json == str(path) and not chosen.identical

    def test_a_missing_or_invalid_tune_json_is_one_clear_error(self, clock: Clock, tmp_path: Path) -> None:
        """No file, not JSON, another schema, no recommended pipeline, an unregistered variant: each a
        DetbenchError naming the file."""
        bad = {
            "missing.json": None,
            "garbled.json": "{not json",
            "old.json": json.dumps({"schema": 1}),
            "none.json": json.dumps({"schema": TUNE_SCHEMA, "recommended_pipeline": None}),
        }
        for name, text in bad.items():
            if text is not None:
                (tmp_path / name).write_text(text, encoding="utf-8")
            with pytest.raises(DetbenchError, match=name):
                steps.photo_pipeline(tmp_path / name)
        unknown = _tune_json(tmp_path / "unknown.json", "nope", "quick", "ultralytics")
        with pytest.raises(DetbenchError, match=r"unknown\.json: no decode variant 'nope'"):
            steps.photo_pipeline(unknown)

    def test_report_fails_on_a_bad_tune_json_before_measuring(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``detbench report --tune-json`` of a missing file exits 1 in one line naming it."""
        missing = tmp_path / "tune.json"
        assert cli.main(["report", "--tune-json", str(missing), "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip()
        assert str(missing) in err and len(err.splitlines()) == 1
        assert not (tmp_path / "out").exists()

    def test_tune_is_a_deprecated_alias_of_tune_json(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``report --tune PATH`` (the older name) sets the one option, --tune-json; both at once is a
        usage error rather than one of the two files silently dropped."""
        from detbench.cli.report import report_settings

        path = tmp_path / "tune.json"
        args = cli.build_parser().parse_args(["report", "--tune", str(path)])
        assert report_settings(args).tune_json == path
        both = ["report", "--tune", str(path), "--tune-json", str(path), "--out", str(tmp_path / "out")]
        assert cli.main(both) == 2
        assert "not allowed with" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


class TestTiming:
    def test_default_pipeline_is_timed_beside_the_reference(self, clock: Clock) -> None:
        """Each backend's reference row has the reference variants' costs, its recommended row the
        identical alternatives' (nothing to admit); the inference is the same backend's in both."""
        backends = {n: FakeBackend(clock, n) for n in ("x", "y")}
        ref, rec = _measure(clock, steps.photo_pipeline(None), backends)
        for n in backends:
            assert _stage_ms(ref[n]) == pytest.approx({**REFERENCE_MS, "inference": INFERENCE_MS})
            assert _stage_ms(rec[n]) == pytest.approx(
                {"decode": 3.0, "preprocess": 1.0, "inference": INFERENCE_MS, "postprocess": 0.5}
            )
            assert rec[n]["images"] == len(PHOTOS) and rec[n]["warm_passes"] == PLAN.warm_passes
            assert rec[n]["reason"] is None
            assert ref[n]["end_to_end_ms"] / rec[n]["end_to_end_ms"] == pytest.approx(12 / 8.5)

    def test_tune_json_pipeline_with_an_admitted_reduced_decode(self, clock: Clock, tmp_path: Path) -> None:
        """tune.json's pipeline, a reduced decode whose detections match the reference pipeline's, is
        admitted and timed with its own variants."""
        path = _tune_json(tmp_path / "tune.json", "good-reduced", "quick", "ultralytics")
        ref, rec = _measure(clock, steps.photo_pipeline(path), {"x": FakeBackend(clock, "x")})
        assert _stage_ms(rec["x"]) == pytest.approx(
            {"decode": 1.0, "preprocess": 1.0, "inference": INFERENCE_MS, "postprocess": 1.0}
        )
        assert _stage_ms(ref["x"]) == pytest.approx({**REFERENCE_MS, "inference": INFERENCE_MS})

    def test_a_refused_reduced_decode_is_not_timed_and_says_why(self, clock: Clock, tmp_path: Path) -> None:
        """On the backend where the reduced decode's detections miss the reference's, the row is the
        reason and the decode ran only in the admission check (once per photo); on the backend with no
        detection to miss it is admitted and timed; the reference is timed on both."""
        path = _tune_json(tmp_path / "tune.json", "bad-reduced", "reference", "ultralytics")
        backends = {"x": FakeBackend(clock, "x"), "quiet": FakeBackend(clock, "quiet", score=0.1)}
        ref, rec = _measure(clock, steps.photo_pipeline(path), backends)
        assert rec["x"]["images"] == 0 and "decode_ms" not in rec["x"]
        assert rec["x"]["reason"].startswith("not admitted: out of bounds vs the reference pipeline")
        assert rec["quiet"]["reason"] is None and rec["quiet"]["decode_ms"] == pytest.approx(1.0)
        timed_passes = 1 + PLAN.warm_passes  # the cold pass, then the warm ones
        quiet_runs = len(PHOTOS) + timed_passes * len(PHOTOS) + PLAN.warm_passes * PLAN.settle_calls
        assert clock.calls["bad-reduced"] == len(PHOTOS) + quiet_runs
        assert all(ref[n]["reason"] is None for n in backends)
        (note,) = steps.untimed_notes(ref, rec)
        assert note.startswith("x: recommended pipeline not timed on the photos: not admitted: out of bounds")

    def test_fixed_batch_and_reference_as_recommended(self, clock: Clock, tmp_path: Path) -> None:
        """A fixed-batch artifact gets its reason in both rows; a recommended pipeline that is the
        reference is not timed twice."""
        backends = {"x": FakeBackend(clock, "x"), "fixed": FakeBackend(clock, "fixed", batch=4)}
        ref, rec = _measure(clock, steps.photo_pipeline(None), backends)
        assert ref["fixed"]["reason"] == rec["fixed"]["reason"] == "fixed batch of 4: no per-image pipeline"
        assert steps.untimed_notes(ref, rec) == []  # the fixed batch is said by the reference's row
        path = _tune_json(tmp_path / "tune.json", "pillow", "reference", "ultralytics")
        ref, rec = _measure(clock, steps.photo_pipeline(path), {"x": FakeBackend(clock, "x")})
        assert ref["x"]["reason"] is None
        assert rec["x"] == {"images": 0, "reason": "the reference pipeline itself: see photo_stages_ms"}


# -- records and rendering ---------------------------------------------------------------------------

SCHEMA_1 = Path(__file__).parent / "data" / "report-schema1.json"  # written before this section


def _old() -> dict:
    return json.loads(SCHEMA_1.read_text(encoding="utf-8"))


def _stages(images: int, e2e: float) -> dict:
    return {
        "images": images,
        "warm_passes": 2,
        "decode_ms": 1.0,
        "preprocess_ms": 0.5,
        "decode_preprocess_ms": 1.5,
        "inference_ms": e2e - 1.75,
        "postprocess_ms": 0.25,
        "end_to_end_ms": e2e,
        "cold_end_to_end_ms": 2 * e2e,
        "reason": None,
    }


def _with_section(doc: dict) -> dict:
    doc["recommended_pipeline"] = {
        "source": "tune.json",
        "tune_json": "tune/tune.json",
        "decode": "opencv-reduced",
        "preprocess": "lean",
        "postprocess": "numpy",
        "identical": False,
    }
    pytorch, ort = doc["backends"]
    pytorch["photo_stages_ms"], ort["photo_stages_ms"] = _stages(6, 30.0), _stages(6, 9.0)
    pytorch["recommended_photo_stages_ms"] = _stages(6, 20.0)
    ort["recommended_photo_stages_ms"] = {"images": 0, "reason": "not admitted: out of bounds vs the ref"}
    return doc


def _column(doc: dict, name: str) -> list[str]:
    i = deploy_header(doc).index(name)
    return [row[i] for row in deployment_rows(doc)]


def test_section_is_typed_and_older_files_still_check() -> None:
    """The new keys pass the schema check (a mistyped one does not); a file without them still does."""
    assert problems(_old(), Report) == []
    doc = _with_section(_old())
    assert problems(doc, Report) == []
    doc["recommended_pipeline"]["identical"] = "no"
    assert problems(doc, Report) != []


def test_rendering_shows_both_end_to_ends_their_ratio_and_the_source() -> None:
    """Per backend: reference and recommended e2e p50 on the photos and their ratio; a refused backend's
    reason in the stage table; the line saying which pipeline and where from."""
    doc = _with_section(_old())
    assert _column(doc, "photos e2e ms") == ["30.00", "9.00"]
    assert _column(doc, "photos rec. e2e ms") == ["20.00", "-"]
    assert _column(doc, "rec. speedup") == ["1.50x", "-"]
    rows = [r for r in stage_rows(doc) if r[1].endswith("recommended")]
    assert [r[:2] for r in rows] == [
        ["pytorch", "6 photos, recommended"],
        ["onnxruntime", "0 photos, recommended"],
    ]
    assert rows[1][3] == "not admitted: out of bounds vs the ref" and len(rows[1]) == len(STAGE_HEADER)
    line = recommended_pipeline_line(doc)
    assert line and "opencv-reduced/lean/numpy" in line and "--tune-json tune/tune.json" in line
    assert line in render_markdown(doc)
    doc["recommended_pipeline"].update(source="identical variants", tune_json=None, identical=True)
    assert "no --tune-json" in (recommended_pipeline_line(doc) or "")


def test_an_older_file_renders_dashes_and_no_source_line() -> None:
    """A report.json from before the section: dashes in the new columns, no recommended rows or line."""
    doc = _old()
    assert _column(doc, "photos rec. e2e ms") == _column(doc, "rec. speedup") == ["-", "-"]
    assert not any(r[1].endswith("recommended") for r in stage_rows(doc))
    assert recommended_pipeline_line(doc) is None
    assert "Recommended pipeline" not in render_markdown(doc)
