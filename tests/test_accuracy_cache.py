"""The report's accuracy reused across runs (verify.accuracy_cache): a hit only on the same inputs,
a miss when any of them changes, an unusable record measured again, --remeasure-accuracy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from detbench import cpuinfo
from detbench.cli import build_parser
from detbench.cli.report import report_settings
from detbench.report import steps
from detbench.runtimes.backends import BackendSettings
from detbench.verify import accuracy, accuracy_cache
from detbench.verify.accuracy import AccuracyResult
from detbench.verify.accuracy_cache import AccuracyStore

NAMES = ("a", "b")


class FakeBackend:
    """What the key reads of a loaded backend: name, precision, settings and the artifact's path."""

    def __init__(self, name: str, artifact: Path, precision: str = "fp32", threads: int = 2) -> None:
        self.name, self.artifact, self.precision = name, artifact, precision
        self.settings = BackendSettings(threads=threads)


class Scorer:
    """Stands in for ``verify.accuracy.evaluate``: counts its calls, figures from a counter so a
    re-measured figure differs from a reused one."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, backend, dataset, *, imgsz, batch, limit, progress) -> AccuracyResult:
        self.calls.append(backend.name)
        progress(limit)
        m = 0.5 + len(self.calls) / 100
        per_class = {
            "a": {"precision": m, "recall": m, "mAP50": m, "mAP50-95": m / 2},
            "b": dict.fromkeys(("precision", "recall", "mAP50", "mAP50-95")),
        }
        return AccuracyResult(m, m / 2, m, m, per_class, limit)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Two fake backends with artifacts on disk, three val images with labels, a store, a scorer."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    val = []
    for i in range(3):
        image = tmp_path / "images" / f"{i}.png"
        image.write_bytes(b"image %d" % i)
        (tmp_path / "labels" / f"{i}.txt").write_text(f"0 0.5 0.5 0.{i + 1} 0.2\n")
        val.append(image)
    dataset = SimpleNamespace(
        names=NAMES, label_for=lambda p: tmp_path / "labels" / f"{Path(p).stem}.txt", root=tmp_path
    )
    artifacts = {}
    for name in ("pytorch", "onnxruntime"):
        artifacts[name] = tmp_path / f"{name}.bin"
        artifacts[name].write_bytes(f"weights of {name}".encode())
    loaded = {n: FakeBackend(n, p) for n, p in artifacts.items()}
    inp = steps.Inputs(
        weights=artifacts["pytorch"],
        data_yaml=tmp_path / "data.yaml",
        dataset=dataset,
        info=SimpleNamespace(names=NAMES),
        imgsz=64,
        val=val,
        n_val=len(val),
        names=list(loaded),
        overrides={},
    )
    scorer = Scorer()
    monkeypatch.setattr(accuracy, "evaluate", scorer)
    return SimpleNamespace(
        loaded=loaded, inp=inp, store=AccuracyStore(tmp_path / "cache"), scorer=scorer, tmp=tmp_path
    )


def _run(w: SimpleNamespace, *, batch: int = 8, reuse: bool = True) -> tuple[dict, list[str]]:
    return steps.measure_accuracy(w.loaded, w.inp, batch, lambda _n, _k: None, store=w.store, reuse=reuse)


def test_the_same_inputs_reuse_the_first_runs_figures(world: SimpleNamespace) -> None:
    """A second run on identical inputs scores nothing and returns the first run's figures, each row
    marked reused with the first run's time, and the report's note says so once."""
    first, notes = _run(world)
    assert world.scorer.calls == ["pytorch", "onnxruntime"] and notes == []
    assert {r["source"] for r in first.values()} == {"measured"}
    second, notes = _run(world)
    assert world.scorer.calls == ["pytorch", "onnxruntime"], "nothing is scored again"
    assert notes == []
    for name, row in second.items():
        assert row == {**first[name], "source": "reused"}
    (note,) = steps.reused_accuracy_notes(second)
    day = first["pytorch"]["measured_at"][:10]
    assert note.startswith(f"accuracy reused for 2 backends from a run on {day} (same artifacts")
    assert "--remeasure-accuracy" in note
    assert steps.reused_accuracy_notes(first) == []
    two_days = {
        "a": {"source": "reused", "measured_at": "2026-12-06T23:59:00+00:00"},
        "b": {"source": "reused", "measured_at": "2026-12-07T00:01:00+00:00"},
        "c": {"source": "measured", "measured_at": "2026-12-08T10:00:00+00:00"},
    }
    (note,) = steps.reused_accuracy_notes(two_days)
    assert note.startswith("accuracy reused for 2 backends from runs on 2026-12-06, 2026-12-07 (")


def _artifact_changed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    w.loaded["onnxruntime"].artifact.write_bytes(b"a perturbed model")


def _image_changed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    w.inp.val[1].write_bytes(b"another image")


def _label_changed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    w.inp.dataset.label_for(w.inp.val[2]).write_text("1 0.5 0.5 0.3 0.2\n")


def _label_removed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    w.inp.dataset.label_for(w.inp.val[0]).unlink()


def _fewer_images(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    w.inp.n_val = 2


def _imgsz_changed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    w.inp.imgsz = 96


def _threads_changed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    for b in w.loaded.values():
        b.settings = dataclasses.replace(b.settings, threads=1)


def _version_changed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    old = accuracy_cache.versions()
    mp.setattr(accuracy_cache, "versions", lambda: {**old, "onnxruntime": "0.0.1"})


def _isa_changed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    old = cpuinfo.cpu_flags()
    mp.setattr(cpuinfo, "cpu_flags", lambda: [*old, "amx_tile"] if "amx_tile" not in old else old[:-1])


def _source_changed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    mp.setattr(accuracy_cache, "source_sha256", lambda: "0" * 64)


def _nms_changed(w: SimpleNamespace, mp: pytest.MonkeyPatch) -> None:
    mp.setattr(accuracy_cache, "VAL_IOU", 0.6)


@pytest.mark.parametrize(
    "change",
    [
        _artifact_changed,
        _image_changed,
        _label_changed,
        _label_removed,
        _fewer_images,
        _imgsz_changed,
        _threads_changed,
        _version_changed,
        _isa_changed,
        _source_changed,
        _nms_changed,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_any_changed_input_is_measured_again(world: SimpleNamespace, monkeypatch, change) -> None:
    """Each part of the key, changed alone, makes the affected backends miss and be scored again."""
    _run(world)
    change(world, monkeypatch)
    again, _ = _run(world)
    expected = ["onnxruntime"] if change is _artifact_changed else ["pytorch", "onnxruntime"]
    assert world.scorer.calls == ["pytorch", "onnxruntime", *expected]
    for name in expected:
        assert again[name]["source"] == "measured"


def test_a_changed_batch_is_measured_again(world: SimpleNamespace) -> None:
    """The scoring batch is part of the key (a fixed-batch artifact pads its last call differently)."""
    _run(world, batch=8)
    _run(world, batch=4)
    assert len(world.scorer.calls) == 4


def _edited(text: str, **figures: float) -> str:
    doc = json.loads(text)
    return json.dumps({**doc, "accuracy": {**doc["accuracy"], **figures}})


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # a partial write
        lambda text: "",
        lambda text: "not json",
        lambda text: "[]",
        lambda text: _edited(text, mAP50=0.99),  # its figures edited: the digest disagrees
        lambda text: json.dumps({**json.loads(text), "format": 99}),
    ],
    ids=["partial", "empty", "not-json", "not-an-object", "edited", "other-format"],
)
def test_an_unusable_record_is_measured_again_never_a_crash(world: SimpleNamespace, damage) -> None:
    """A damaged record is ignored with a note naming it, the backend is scored again, and the
    record is rewritten whole: the run after that reuses it."""
    _run(world)
    key = next(iter(world.store.root.rglob("*.json")))
    records = sorted(world.store.root.rglob("*.json"))
    assert len(records) == 2
    for path in records:
        path.write_text(damage(path.read_text()))
    again, notes = _run(world)
    assert world.scorer.calls == ["pytorch", "onnxruntime"] * 2
    assert {r["source"] for r in again.values()} == {"measured"}
    assert len(notes) == 2 and all("accuracy record ignored and measured again" in n for n in notes)
    assert str(key) in " ".join(notes)
    third, notes = _run(world)
    assert len(world.scorer.calls) == 4 and notes == []
    assert {r["source"] for r in third.values()} == {"reused"}


def test_a_record_with_malformed_figures_is_measured_again(world: SimpleNamespace) -> None:
    """A record whose digest matches but whose figures have the wrong types is not handed out."""
    _run(world)
    for path in world.store.root.rglob("*.json"):
        doc = json.loads(path.read_text())
        doc["accuracy"]["mAP50"] = "high"
        doc["digest"] = accuracy_cache._content_digest(doc)
        path.write_text(json.dumps(doc))
    again, notes = _run(world)
    assert {r["source"] for r in again.values()} == {"measured"}
    assert all("malformed" in n for n in notes) and len(notes) == 2


def test_remeasure_scores_every_backend_and_refreshes_the_records(world: SimpleNamespace) -> None:
    """reuse=False (--remeasure-accuracy) scores everything again and writes the new figures."""
    first, _ = _run(world)
    fresh, _ = _run(world, reuse=False)
    assert world.scorer.calls == ["pytorch", "onnxruntime"] * 2
    assert {r["source"] for r in fresh.values()} == {"measured"}
    assert fresh["pytorch"]["mAP50"] != first["pytorch"]["mAP50"]
    reused, _ = _run(world)
    assert reused["pytorch"]["mAP50"] == fresh["pytorch"]["mAP50"]


def test_an_unwritable_cache_costs_a_note_not_the_run(world: SimpleNamespace) -> None:
    """A cache that cannot be written leaves this run's figures intact and says why."""
    world.store.root.parent.mkdir(parents=True, exist_ok=True)
    world.store.root.write_text("a file where the folder belongs")
    out, notes = _run(world)
    assert {r["source"] for r in out.values()} == {"measured"}
    assert any("accuracy record not written" in n for n in notes)


def test_without_a_store_every_run_scores(world: SimpleNamespace) -> None:
    """measure_accuracy without a store (its default) keeps nothing: each call scores every backend."""
    for _ in range(2):
        out, _ = steps.measure_accuracy(world.loaded, world.inp, 8, lambda _n, _k: None)
        assert {r["source"] for r in out.values()} == {"measured"}
    assert world.scorer.calls == ["pytorch", "onnxruntime"] * 2


@pytest.mark.parametrize(("argv", "expected"), [([], False), (["--remeasure-accuracy"], True)])
def test_the_cli_flag_reaches_the_settings(argv: list[str], expected: bool) -> None:
    """``detbench report --remeasure-accuracy`` sets the report's settings to score again."""
    args = build_parser().parse_args(["report", *argv])
    assert report_settings(args).remeasure_accuracy is expected
