"""tune's pipeline search (fake backends, a fake clock), ``detbench.load_pipeline`` from a small tune.json,
and ``detbench predict --pipeline``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

import detbench
from detbench import cli
from detbench.data.datasets import load_dataset
from detbench.data.images import load_image
from detbench.data.photos import PhotoConfig, photo_dataset, write_photos
from detbench.errors import DetbenchError
from detbench.runtimes import pipeline as stages
from detbench.runtimes.decode import Decoded, decode_opencv_reduced
from detbench.runtimes.pipeline import BackendConfig, Pipeline, PipelineVariant
from detbench.runtimes.postprocess import postprocess, ultralytics_nms
from detbench.runtimes.preprocess import preprocess
from detbench.tune import pipelines
from detbench.tune.pipelines import Config, Space
from detbench.tune.records import SCHEMA
from detbench.verify.decode import DECODE_TOLERANCES

IMGSZ = 64
NAMES = ("a", "b")
# Fake per-image costs, ms: the objective's order is known in advance.
STAGE_MS = {
    "pillow": 5.0,
    "opencv": 3.0,
    "opencv-reduced": 1.0,
    "broken-reduced": 0.1,  # the fastest of all, and wrong: only admission keeps it out
    "reference": 1.0,
    "lean": 0.5,
    "ultralytics": 1.0,
    "numpy": 0.5,
}
INFERENCE_MS = (2.0, 1.5)  # config 0, config 1


@pytest.fixture(scope="module", autouse=True)
def _torch_imported() -> None:
    """Import torch and ultralytics' NMS once, so no test's time is that import."""
    ultralytics_nms()


class Clock:
    """A fake timer: fake backends and stages advance it by their cost, the sampler reads it."""

    def __init__(self) -> None:
        self.ms = 0.0

    def sampler(self, calls: int = 4) -> Callable[[Sequence[Callable[[], object]]], list[np.ndarray]]:
        self.runs: list[int] = []

        def sample(fns: Sequence[Callable[[], object]]) -> list[np.ndarray]:
            self.runs.append(len(fns))
            out = []
            for fn in fns:
                times = []
                for _ in range(calls):
                    t0 = self.ms
                    fn()
                    times.append((self.ms - t0) / 1e3)
                out.append(np.array(times))
            return out

        return sample


class FakeBackend:
    """A constant raw head (two boxes of two classes in input pixels), costing ``ms`` per run."""

    def __init__(self, clock: Clock, ms: float) -> None:
        self.clock, self.ms = clock, ms
        raw = np.zeros((1, 4 + len(NAMES), 3), np.float32)
        raw[0, :4, 0], raw[0, 4, 0] = (32, 32, 24, 24), 0.9
        raw[0, :4, 1], raw[0, 5, 1] = (20, 30, 10, 12), 0.8
        self.raw = raw

    def run(self, x: np.ndarray) -> np.ndarray:
        assert x.shape == (1, 3, IMGSZ, IMGSZ)
        self.clock.ms += self.ms
        return self.raw.copy()


def _broken_reduced(path, imgsz) -> Decoded:
    """The reduced decode that forgets its factor: boxes stay in the reduced image's pixels."""
    d = decode_opencv_reduced(path, imgsz)
    return Decoded(d.rgb, d.rgb.shape[:2], 1)


@pytest.fixture
def broken_decode(monkeypatch: pytest.MonkeyPatch) -> str:
    """A non-identical decode variant registered for one test, with the reduced decodes' row."""
    v = PipelineVariant(
        "decode", "broken-reduced", "forgets its factor", identical=False, make=lambda: _broken_reduced
    )
    monkeypatch.setitem(stages.REGISTRY, ("decode", v.name), v)
    return v.name


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Small JPEGs, some EXIF-tagged: reduced by 4 for a 64 px input."""
    out = tmp_path_factory.mktemp("photos")
    return load_dataset(write_photos(out, PhotoConfig(per_size=2, sizes=((320, 240),)))).images("val")


def _search(photos, clock: Clock, decoders=("pillow", "opencv-reduced", "broken-reduced")):
    configs = [
        Config(
            k,
            f"fake {k}",
            BackendConfig("onnxruntime", 1, Path(f"m{k}.onnx"), IMGSZ, NAMES),
            FakeBackend(clock, ms),
        )
        for k, ms in enumerate(INFERENCE_MS)
    ]

    def make(p: Pipeline, backend):
        run = p.load(backend)
        cost = sum(STAGE_MS[name] for name in p.stages)

        def timed(path):
            clock.ms += cost
            return run(path)

        return timed

    tolerances = {**DECODE_TOLERANCES, "broken-reduced": DECODE_TOLERANCES["opencv-reduced"]}
    sampler = clock.sampler()
    rows, rec = pipelines.search(
        configs, photos, sampler, space=Space(decode=decoders), make=make, tolerances=tolerances
    )
    return rows, rec


class TestSearch:
    def test_top_configs_are_the_fastest_verified(self) -> None:
        """Verified and timed only, lowest inference p50 first, ties in search order."""
        c = [
            {"backend": "onnxruntime", "verified": True, "p50_ms": 3.0},
            {"backend": "openvino", "verified": False, "p50_ms": None},
            {"backend": "openvino", "verified": True, "p50_ms": 1.0},
            {"backend": "onnxruntime", "verified": True, "p50_ms": 3.0},
        ]
        assert pipelines.top_configs(c, 2) == [2, 0]
        assert pipelines.top_configs(c, 5) == [2, 0, 3]
        assert pipelines.top_configs([c[1]], 2) == []

    def test_the_fastest_nms_free_config_is_searched_end_to_end(self) -> None:
        """An end2end configuration slower in inference-only p50 still gets its end-to-end chance:
        NMS, what it saves, is outside p50. Only the fastest one, and only once."""
        c = [
            {"backend": "onnxruntime", "verified": True, "p50_ms": 1.0},
            {"backend": "openvino", "verified": True, "p50_ms": 2.0},
            {"backend": "onnxruntime-end2end", "verified": True, "p50_ms": 4.0},
            {"backend": "onnxruntime-end2end", "verified": True, "p50_ms": 3.0},
            {"backend": "onnxruntime-end2end", "verified": False, "p50_ms": None},
        ]
        assert pipelines.top_configs(c, 2) == [0, 1, 3]
        assert pipelines.top_configs(c, 3) == [0, 1, 3]
        assert pipelines.top_configs(c, 1) == [0, 3]

    def test_fastest_admitted_pipeline_is_recommended(self, photos, broken_decode) -> None:
        """Configurations x decode x preprocess x postprocess in order; the out-of-bounds reduced decode,
        the fastest of all, is refused and never timed; the recommendation is the fastest admitted."""
        clock = Clock()
        rows, rec = _search(photos, clock)
        assert len(rows) == 2 * 3 * 2 * 2
        assert [r["label"] for r in rows[:4]] == [
            "fake 0 pillow/reference/ultralytics",
            "fake 0 pillow/reference/numpy",
            "fake 0 pillow/lean/ultralytics",
            "fake 0 pillow/lean/numpy",
        ]
        by = {r["label"]: r for r in rows}
        for k in (0, 1):
            for pre in ("reference", "lean"):
                for post in ("ultralytics", "numpy"):
                    ok = by[f"fake {k} opencv-reduced/{pre}/{post}"]
                    assert ok["admitted"] and not ok["identical"] and ok["reason"] is None
                    bad = by[f"fake {k} {broken_decode}/{pre}/{post}"]
                    assert not bad["admitted"] and "out of bounds vs the reference pipeline" in bad["reason"]
                    assert bad["e2e_p50_ms"] is None
        assert clock.runs == [16 + 2]  # one timing run: the 16 admitted pipelines and 2 backends alone
        p = by["fake 0 pillow/lean/numpy"]
        assert p["e2e_p50_ms"] == pytest.approx(5 + 0.5 + 0.5 + INFERENCE_MS[0])
        assert p["inference_p50_ms"] == pytest.approx(INFERENCE_MS[0])
        assert rec["index"] == rows.index(by["fake 1 opencv-reduced/lean/numpy"])
        assert (rec["decode"], rec["preprocess"], rec["postprocess"]) == ("opencv-reduced", "lean", "numpy")
        assert rec["e2e_p50_ms"] == pytest.approx(1 + 0.5 + 0.5 + 1.5)
        assert rec["reference_e2e_p50_ms"] == pytest.approx(5 + 1 + 1 + 1.5)
        assert rec["artifact"] == "m1.onnx" and rec["names"] == list(NAMES)

    def test_nothing_admitted_and_timed_recommends_nothing(self, photos, broken_decode) -> None:
        clock = Clock()
        rows, rec = _search(photos, clock, decoders=(broken_decode,))
        assert rec is None and not any(r["admitted"] for r in rows)
        assert clock.runs == [2]  # only the backends alone

    def test_non_identical_stage_without_a_row_is_refused(self, photos, broken_decode) -> None:
        """No tolerance row, no admission: a claim nobody measured is not taken on trust."""
        cfg = Config(
            0, "fake", BackendConfig("onnxruntime", 1, Path("m.onnx"), IMGSZ, NAMES), FakeBackend(Clock(), 1)
        )
        p = Pipeline(cfg.spec, broken_decode)
        assert pipelines.tolerance(p) is None
        (reason,) = pipelines.admit([(cfg, p)], photos)
        assert reason is not None and "no tolerance row" in reason


# -- the entry point and predict (the baseline's ONNX export on onnxruntime) ---------------------------


@pytest.fixture(scope="module")
def onnx_config(workbench) -> BackendConfig:
    return BackendConfig(
        "onnxruntime", 1, workbench.artifact("onnxruntime"), workbench.imgsz, workbench.names
    )


@pytest.fixture(scope="module")
def photo_files() -> list[Path]:
    """Two photos of each size from the photo-sized set (the JPEGs tune checks and times on)."""
    return load_dataset(photo_dataset(PhotoConfig(per_size=2))).images("val")


def _tune_json(dest: Path, config: BackendConfig, stages_=("opencv-reduced", "lean", "numpy")) -> Path:
    """A small tune.json: the schema and a recommended pipeline, what load_pipeline reads."""
    rec = {
        "index": 0,
        "backend": config.backend,
        "threads": config.threads,
        "artifact": str(config.artifact),
        "imgsz": config.imgsz,
        "names": list(config.names),
        "decode": stages_[0],
        "preprocess": stages_[1],
        "postprocess": stages_[2],
        "e2e_p50_ms": 1.0,
        "inference_p50_ms": 0.5,
        "reference_e2e_p50_ms": 2.0,
    }
    dest.write_text(json.dumps({"schema": SCHEMA, "recommended_pipeline": rec}))
    return dest


def _same(a, b) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_load_pipeline_round_trip(tmp_path: Path, onnx_config: BackendConfig, photo_files) -> None:
    """load_pipeline builds exactly tune.json's recommended pipeline (and its reference), and finds the
    artifact beside tune.json when the searched path is gone; a tune.json without one is refused."""
    path = _tune_json(tmp_path / "tune.json", onnx_config)
    pipe = detbench.load_pipeline(path)
    assert pipe.spec == Pipeline(onnx_config, "opencv-reduced", "lean", "numpy")
    assert detbench.load_pipeline(path, which="reference").spec == Pipeline(onnx_config)
    direct = Pipeline(onnx_config, "opencv-reduced", "lean", "numpy").load()
    for f in photo_files[::2]:
        _same(pipe(f), direct(f))
    gone = BackendConfig(
        "onnxruntime", 1, tmp_path / "gone" / "model.onnx", onnx_config.imgsz, onnx_config.names
    )
    (tmp_path / "recommended").mkdir()
    (tmp_path / "recommended" / "model.onnx").write_bytes(Path(onnx_config.artifact).read_bytes())
    moved = detbench.load_pipeline(_tune_json(tmp_path / "tune.json", gone))
    assert moved.spec.config.artifact == tmp_path / "recommended" / "model.onnx"
    (tmp_path / "empty.json").write_text(json.dumps({"schema": SCHEMA, "recommended_pipeline": None}))
    with pytest.raises(DetbenchError, match="no recommended pipeline"):
        detbench.load_pipeline(tmp_path / "empty.json")
    (tmp_path / "old.json").write_text(json.dumps({"schema": 1}))
    with pytest.raises(DetbenchError, match=r"not a tune\.json of schema"):
        detbench.load_pipeline(tmp_path / "old.json")


def test_recommended_pipeline_boxes_are_in_full_image_pixels(onnx_config: BackendConfig, photo_files) -> None:
    """A reduced decode's boxes come back in the displayed image's pixels: they match the reference
    pipeline's within the reduced decodes' row on the photos."""
    from detbench.verify.compare import assert_detections_match

    ref = Pipeline(onnx_config).load()
    red = Pipeline(onnx_config, "opencv-reduced", "lean", "numpy").load()
    assert_detections_match(
        [ref(f) for f in photo_files], [red(f) for f in photo_files], DECODE_TOLERANCES["opencv-reduced"]
    )


def _todays_predict(workbench, paths: Sequence[Path], conf: float = 0.25) -> list[dict]:
    """What ``detbench predict`` computed before pipelines: load_image, preprocess, onnxruntime, NMS."""
    backend = workbench.load("onnxruntime")
    out = []
    for p in paths:
        x, infos = preprocess([load_image(p)], workbench.imgsz)
        det = postprocess(backend.run(x), infos, workbench.names, conf=conf)[0]
        out.append({"image": str(p), "error": None, "detections": det.to_list()})
    return out


def test_predict_reference_pipeline_is_todays_predict(
    capsys: pytest.CaptureFixture, workbench, baseline: Path, photo_files, dataset
) -> None:
    """``predict --pipeline reference`` (the default) gives today's detections, value for value, on
    EXIF-tagged photos and a val PNG."""
    paths = [*photo_files[:4], dataset.images("val")[0]]
    argv = ["predict", *map(str, paths), "--weights", str(baseline), "--json"]
    assert cli.main([*argv, "--pipeline", "reference"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == _todays_predict(workbench, paths)
    assert sum(len(r["detections"]) for r in got) > 0  # something to compare


def test_predict_recommended_runs_tune_jsons_pipeline(
    capsys: pytest.CaptureFixture, tmp_path: Path, onnx_config: BackendConfig, photo_files, monkeypatch
) -> None:
    """``predict --pipeline recommended`` runs load_pipeline's pipeline; it reads tune/tune.json by
    default, and refuses --backend (tune.json names the backend) or a missing tune.json."""
    (tmp_path / "tune").mkdir()
    path = _tune_json(tmp_path / "tune" / "tune.json", onnx_config)
    pipe = detbench.load_pipeline(path)
    paths = photo_files[:3]
    monkeypatch.chdir(tmp_path)
    assert cli.main(["predict", *map(str, paths), "--pipeline", "recommended", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["detections"] for r in got] == [pipe(p).to_list() for p in paths]
    assert cli.main(["predict", str(paths[0]), "--pipeline", "recommended", "--backend", "pytorch"]) == 1
    assert "--backend" in capsys.readouterr().err
    missing = [
        "predict",
        str(paths[0]),
        "--pipeline",
        "recommended",
        "--tune-json",
        str(tmp_path / "no.json"),
    ]
    assert cli.main(missing) == 1
    assert "no tune.json" in capsys.readouterr().err


def test_pipeline_for_script_refuses_a_decode_option_before_reading(tmp_path: Path) -> None:
    """A script's own decode option beside --tune-json is refused by its name before tune.json is read;
    without it, tune.json's own errors come through."""
    missing = tmp_path / "no.json"
    with pytest.raises(DetbenchError, match=r"^--decoder: with --tune-json detbench runs the decode variant"):
        pipelines.pipeline_for_script(missing, "opencv", "--decoder")
    with pytest.raises(DetbenchError, match=r"cannot read tune\.json"):
        pipelines.pipeline_for_script(missing, None, "--decoder")
