"""Cross-version goldens: every backend against raw head outputs recorded once with the committed baseline."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from detbench._fs import sha256_file
from detbench.verify import golden
from detbench.verify.compare import OutputMismatch


def _other_weights(config: pytest.Config) -> bool:
    return config.getoption("--detbench-weights") is not None or config.getoption("--detbench-retrain")


@pytest.fixture(scope="session")
def committed(pytestconfig: pytest.Config) -> golden.Goldens:
    """The goldens in fixtures/golden/; missing ones fail, unless the user tests other weights anyway."""
    if _other_weights(pytestconfig) and not (golden.GOLDEN_DIR / golden.JSON_NAME).exists():
        pytest.skip(
            "no goldens in fixtures/golden/, and they would belong to the committed baseline, "
            "not to --detbench-weights/--detbench-retrain"
        )
    return golden.load_goldens(golden.GOLDEN_DIR)


@pytest.fixture(scope="session")
def goldens(pytestconfig: pytest.Config, committed: golden.Goldens, baseline: Path) -> golden.Goldens:
    """The committed goldens, when they were made from the weights under test."""
    actual = sha256_file(baseline)
    if _other_weights(pytestconfig) and actual != committed.weights_sha256:
        pytest.skip(
            f"the goldens belong to the committed baseline (weights sha256 "
            f"{committed.weights_sha256[:12]}…), not to {baseline.name} (sha256 {actual[:12]}…) "
            f"given with --detbench-weights/--detbench-retrain"
        )
    return committed


class TestCommittedGoldens:
    def test_backend_matches_goldens(self, goldens: golden.Goldens, backend) -> None:
        """Each backend reproduces the recorded numbers, so a release that moves them all is caught."""
        # ``goldens`` comes first: when it skips, no export is built for a backend that is not compared.
        golden.compare_to_goldens(backend, goldens, golden.golden_tolerance(backend.name))

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param(n, marks=[pytest.mark.openvino] if "openvino" in n else [])
            for n in golden.INT8_PRODUCERS
        ],
    )
    def test_int8_matches_its_own_goldens(self, goldens: golden.Goldens, name: str, workbench) -> None:
        """Each INT8 backend reproduces its own recorded outputs within INT8_OWN (set from the deviation
        measured between the matrix's torch releases), far tighter than its bound against fp32."""
        if name in workbench.overrides:
            pytest.skip(f"{name} runs a user artifact; its own goldens belong to detbench's export")
        own = golden.load_goldens(golden.GOLDEN_DIR, name)
        if reason := own.int8_path_differs():
            pytest.skip(reason)
        assert own.weights_sha256 == goldens.weights_sha256
        golden.compare_to_goldens(workbench.load(name), own, golden.INT8_OWN)

    def test_goldens_belong_to_the_baseline_under_test(
        self, goldens: golden.Goldens, baseline: Path, model_info
    ) -> None:
        """The goldens were made from exactly these weights at this input size."""
        actual = sha256_file(baseline)
        assert actual == goldens.weights_sha256, (
            f"{baseline} has sha256 {actual[:16]}… but {golden.GOLDEN_DIR / golden.JSON_NAME} was made from "
            f"{goldens.weights_sha256[:16]}…: the baseline changed, `{golden.REGEN_HINT}`"
        )
        assert goldens.imgsz == model_info.imgsz

    def test_inputs_regenerate_to_recorded_sha256(self, committed: golden.Goldens) -> None:
        """Synthetic scenes and preprocessing still produce the recorded input tensors bit for bit."""
        x, names = golden.make_inputs(committed.imgsz)
        golden.check_inputs(committed, x, names)

    def test_goldens_are_compact_float32(self, committed: golden.Goldens) -> None:
        """Full float32 precision, one row per recorded input, and small enough to commit."""
        assert committed.raw.dtype == np.float32
        assert len(committed.raw) == len(committed.names) == golden.SCENE_COUNT + len(golden.PHOTOS)
        assert committed.npz_path.stat().st_size < 1_000_000


# -- the machinery, on goldens made here from the reference backend -------------------------------


@pytest.fixture(scope="module")
def fresh(reference, model_info, baseline: Path) -> tuple[np.ndarray, list[str], np.ndarray, dict]:
    """(x, names, raw, meta) computed now, as scripts/regen_goldens.py does."""
    x, names = golden.make_inputs(model_info.imgsz)
    raw = golden.compute(reference, x)
    meta = golden.make_meta(
        x,
        names,
        weights=baseline.name,
        weights_sha256=sha256_file(baseline),
        imgsz=model_info.imgsz,
        producer=reference.describe(),
    )
    return x, names, raw, meta


def _write(directory: Path, raw: np.ndarray, meta: dict) -> golden.Goldens:
    golden.write_goldens(directory, raw, meta)
    return golden.load_goldens(directory)


_MARKS: list[str] = []


def _mark_unpickled() -> str:
    _MARKS.append("unpickled")
    return "unpickled"


class _Payload:
    def __reduce__(self):
        return (_mark_unpickled, ())


class TestGoldenFiles:
    def test_round_trip_is_exact_and_passes(self, reference, fresh, tmp_path: Path) -> None:
        """Written and read back, the goldens equal the computation bit for bit and the reference passes."""
        x, names, raw, meta = fresh
        g = _write(tmp_path, raw, meta)
        assert np.array_equal(g.raw, raw)
        assert g.names == tuple(names)
        devs = golden.compare_to_goldens(reference, g, x=x, names=names)
        assert [d.max_abs for d in devs] == [0.0] * len(names)

    def test_equal_numbers_give_identical_bytes(self, fresh, tmp_path: Path) -> None:
        """Rewriting unchanged numbers leaves golden.npz byte-identical (no churn in git)."""
        _, _, raw, meta = fresh
        golden.write_goldens(tmp_path / "a", raw, meta)
        golden.write_goldens(tmp_path / "b", raw.copy(), meta)
        assert (tmp_path / "a" / golden.NPZ_NAME).read_bytes() == (
            tmp_path / "b" / golden.NPZ_NAME
        ).read_bytes()

    def test_broken_golden_fails_naming_file_input_and_versions(
        self, reference, fresh, tmp_path: Path
    ) -> None:
        """One changed score makes the comparison fail, naming the golden file, the input and its makers."""
        x, names, raw, meta = fresh
        broken = raw.copy()
        broken[3, 6, 100] += 0.01
        g = _write(tmp_path, broken, meta)
        with pytest.raises(OutputMismatch) as exc:
            golden.compare_to_goldens(reference, g, golden.golden_tolerance("pytorch"), x=x, names=names)
        msg = str(exc.value)
        assert f"{g.npz_path} [scene3] produced by torch {meta['versions']['torch']}" in msg
        assert f"onnxruntime {meta['versions']['onnxruntime']}" in msg
        assert "score outputs differ" in msg
        assert "channel 6, anchor 100" in msg
        assert "[scene2]" not in msg, "only the broken input is blamed"

    def test_changed_inputs_are_told_apart_from_numerics(self, reference, fresh, tmp_path: Path) -> None:
        """A recorded input hash that no longer matches blames preprocessing, not the model."""
        x, names, raw, meta = fresh
        inputs = [dict(i) for i in meta["inputs"]]
        inputs[1]["sha256"] = "0" * 64
        g = _write(tmp_path, raw, {**meta, "inputs": inputs})
        with pytest.raises(
            OutputMismatch, match=r"preprocessed inputs no longer match .*not the model.*scene1"
        ):
            golden.compare_to_goldens(reference, g, x=x, names=names)

    def test_npz_edited_without_json_is_refused(self, fresh, tmp_path: Path) -> None:
        """golden.json pins golden.npz's sha256, so a hand-edited array is refused by name."""
        _, _, raw, meta = fresh
        golden.write_goldens(tmp_path, raw, meta)
        np.savez_compressed(tmp_path / golden.NPZ_NAME, raw=raw + 1)
        with pytest.raises(golden.GoldenError, match=r"golden\.npz: sha256 .* does not match golden\.json"):
            golden.load_goldens(tmp_path)

    def test_pickled_npz_is_refused_without_unpickling(self, fresh, tmp_path: Path) -> None:
        """An object array (a pickle) in golden.npz is rejected and its payload never runs."""
        _, _, raw, meta = fresh
        golden.write_goldens(tmp_path, raw, meta)
        npz = tmp_path / golden.NPZ_NAME
        np.savez(npz, raw=np.array([_Payload()], dtype=object), allow_pickle=True)
        doc = json.loads((tmp_path / golden.JSON_NAME).read_text())
        doc["npz_sha256"] = sha256_file(npz)
        (tmp_path / golden.JSON_NAME).write_text(json.dumps(doc))
        with pytest.raises(golden.GoldenError, match="pickled objects are refused"):
            golden.load_goldens(tmp_path)
        assert not _MARKS

    def test_missing_goldens_name_the_file_and_the_fix(self, tmp_path: Path) -> None:
        """Absent goldens say which file is missing and how to make it."""
        with pytest.raises(golden.GoldenError, match=r"golden\.json: missing; .*regen_goldens\.py --write"):
            golden.load_goldens(tmp_path)


class TestRegeneration:
    def test_diff_names_the_moved_input_and_group(self, fresh, tmp_path: Path) -> None:
        """The diff marks only the input that moved, says which group, and lists version changes."""
        _, _, raw, meta = fresh
        old = _write(tmp_path, raw, meta)
        same = golden.diff_goldens(old, raw, meta, golden.golden_tolerance("pytorch"))
        assert not same.beyond_tolerance
        moved = raw.copy()
        moved[8, 1, 7] += 0.5
        newer = {**meta, "versions": {**meta["versions"], "torch": "9.9.9"}}
        diff = golden.diff_goldens(old, moved, newer, golden.golden_tolerance("pytorch"))
        assert diff.beyond_tolerance
        assert f"version  torch {meta['versions']['torch']} -> 9.9.9" in diff.lines
        [bus] = [line for line in diff.lines if line.startswith("bus ")]
        assert "max abs 0.5 (box, channel 1, anchor 7)" in bus
        assert "BEYOND TOLERANCE" in bus
        assert [line for line in diff.lines if "BEYOND" in line] == [bus]

    def test_script_writes_only_with_write(self, baseline: Path, tmp_path: Path, capsys) -> None:
        """New goldens exit 1 and are not written without --write; after --write a rerun exits 0."""
        main = runpy.run_path(
            str(Path(__file__).resolve().parents[1] / "scripts" / "regen_goldens.py"), run_name="regen"
        )["main"]
        args = ["--weights", str(baseline), "--dir", str(tmp_path)]
        assert main(args) == 1
        assert not list(tmp_path.iterdir())
        assert main([*args, "--write"]) == 0
        assert golden.load_goldens(tmp_path).weights_sha256 == sha256_file(baseline)
        assert main(args) == 0
        assert "all within tolerance" in capsys.readouterr().out
