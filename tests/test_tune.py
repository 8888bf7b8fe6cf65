"""``detbench tune``: the space, the Pareto rule, a tiny search with a broken candidate, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from detbench import cli
from detbench.perf.budgets import load_budgets
from detbench.perf.timing import BlockPlan
from detbench.runtimes.backends import REGISTRY
from detbench.schema import problems
from detbench.tune.pareto import dominates, pareto_front, recommend
from detbench.tune.records import SCHEMA, Tune
from detbench.tune.search import TuneSettings, run_search
from detbench.tune.space import Point, batch_layout_matters, configuration_space, thread_counts
from detbench.verify.perturb import perturb_conv_weight

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = {
    "val_images": 16,
    "verify_images": 4,
    "plan": BlockPlan(blocks=2, block_calls=6, discard=1),
    "pipeline_plan": BlockPlan(blocks=2, block_calls=3, discard=1),
    "photos_per_size": 1,
}


def _c(p50, m, size, verified=True, threads=1):
    return {"p50_ms": p50, "mAP50-95": m, "size_mb": size, "verified": verified, "threads": threads}


# -- the space ---------------------------------------------------------------------------------------


class TestSpace:
    def test_thread_counts_cover_one_to_all_cores(self) -> None:
        """Full: every count 1..cores; quick: only the two ends."""
        assert thread_counts(4) == [1, 2, 3, 4]
        assert thread_counts(4, quick=True) == [1, 4]
        assert thread_counts(1, quick=True) == [1]

    def test_every_point_is_a_registered_backend(self) -> None:
        """Backends x threads, plus a static-batch twin only where the export's batch layout matters."""
        points = configuration_space(threads=[1, 2])
        assert {p.backend for p in points} == set(REGISTRY)
        for name in REGISTRY:
            static = [p for p in points if p.backend == name and not p.dynamic_batch]
            assert len(static) == (2 if batch_layout_matters(name) else 0)
        assert not batch_layout_matters("pytorch")
        assert batch_layout_matters("onnxruntime")

    def test_a_users_artifact_gets_no_static_twin(self) -> None:
        """An override has one layout, the one it was exported with."""
        points = configuration_space(["onnxruntime"], [1], fixed=["onnxruntime"])
        assert points == [Point("onnxruntime", 1, 1, True)]

    def test_unknown_backend_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown backend"):
            configuration_space(["tensorrt"], [1])


# -- Pareto and the recommendation ------------------------------------------------------------------------


class TestPareto:
    def test_dominance_needs_one_strict_improvement(self) -> None:
        assert dominates(_c(1.0, 0.5, 5), _c(2.0, 0.5, 5))
        assert not dominates(_c(1.0, 0.5, 5), _c(1.0, 0.5, 5))
        assert not dominates(_c(1.0, 0.4, 5), _c(2.0, 0.5, 5))  # faster but less accurate: a trade-off

    def test_front_keeps_trade_offs_and_drops_dominated(self) -> None:
        cands = [_c(1.0, 0.50, 12), _c(2.0, 0.55, 12), _c(2.5, 0.50, 12), _c(3.0, 0.55, 5)]
        assert pareto_front(cands) == [0, 1, 3]

    def test_unverified_never_on_front_nor_recommended(self) -> None:
        """A broken candidate faster and more accurate than all others still loses: it is not the model."""
        cands = [_c(0.1, 0.9, 1, verified=False), _c(2.0, 0.5, 12), _c(1.5, 0.5, 12)]
        assert pareto_front(cands) == [2]
        assert recommend(cands) == 2
        assert recommend([_c(0.1, 0.9, 1, verified=False)]) is None

    def test_missing_accuracy_counts_as_worst(self) -> None:
        """Latency-only runs (no mAP) still rank by latency and size."""
        cands = [_c(1.0, None, 5), _c(2.0, None, 5)]
        assert pareto_front(cands) == [0]
        assert recommend(cands) == 0

    def test_ties_go_to_the_smaller_artifact(self) -> None:
        assert recommend([_c(1.0, 0.5, 12), _c(1.0, 0.5, 5)]) == 1


# -- one tiny search with a broken candidate --------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_onnx(workbench, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The baseline's ONNX export with one weight of the first Conv shifted (a silently wrong model)."""
    dest = tmp_path_factory.mktemp("broken") / "model.onnx"
    perturb_conv_weight(workbench.exporter.get("onnx").path, dest, node="model.0/", delta=0.05)
    return dest


@pytest.fixture(scope="module")
def tiny_search(baseline: Path, dataset_yaml: Path, broken_onnx: Path):
    """pytorch (right, slow) against onnxruntime on the broken artifact (wrong, ~3x faster)."""
    settings = TuneSettings(
        weights=baseline,
        data=dataset_yaml,
        points=(Point("pytorch", 1), Point("onnxruntime", 1)),
        overrides={"onnxruntime": broken_onnx},
        cold="front",
        **TINY,
    )
    return run_search(settings)


def test_tune_json_schema(tiny_search) -> None:
    """Every key has the type tune.records.Tune gives it, and no other key is there; recommended is
    one of the candidates."""
    doc = json.loads(json.dumps(tiny_search.doc, allow_nan=False))
    assert problems(doc, Tune) == []
    assert doc["schema"] == SCHEMA
    for c in doc["candidates"]:
        assert c["precision"] in ("fp32", "bf16", "int8")
        assert (c["reason"] is None) == c["verified"]
        for key in ("p50_ms", "p99_ms", "mAP50", "mAP50-95", "size_mb"):
            assert c[key] is None or (isinstance(c[key], float) and math.isfinite(c[key]))
    rec = doc["recommended"]
    assert rec["index"] in doc["pareto"]
    assert {k: v for k, v in rec.items() if k != "index"} == doc["candidates"][rec["index"]]
    assert 0 < rec["p50_ms"] <= rec["p99_ms"]
    assert rec["first_call_ms"] > 0 and rec["peak_rss_mb"] > 0  # cold start in a fresh process
    # The pipeline search ran on the one verified configuration, every identical pipeline admitted.
    assert {p["config"] for p in doc["pipelines"]} == {rec["index"]}
    assert len(doc["photos"]["images"]) == 3 and len(doc["pipelines"]) == 12
    assert all(p["admitted"] for p in doc["pipelines"] if p["identical"])
    rp = doc["recommended_pipeline"]
    best = doc["pipelines"][rp["index"]]
    assert (
        rp["e2e_p50_ms"]
        == best["e2e_p50_ms"]
        == min(p["e2e_p50_ms"] for p in doc["pipelines"] if p["admitted"])
    )
    assert rp["backend"] == "pytorch" and rp["artifact"] == rec["artifact"]
    # Not e2e > inference: the recommended row is the least of twelve noisy medians, and on a loaded
    # runner it came out under its backend's own (29.4 vs 40.8 ms in CI); the order is checked on a
    # fake clock in tests/test_tune_pipelines.py.
    assert rp["inference_p50_ms"] == best["inference_p50_ms"] > 0


def test_broken_candidate_is_caught_and_never_recommended(tiny_search) -> None:
    """The perturbed ONNX model is faster than eager PyTorch, so only verification keeps it out."""
    by_name = {c["backend"]: c for c in tiny_search.doc["candidates"]}
    broken = by_name["onnxruntime"]
    assert broken["verified"] is False
    assert "failed verification" in broken["reason"] and "box outputs differ" in broken["reason"]
    assert broken["p50_ms"] is None  # never timed
    assert tiny_search.doc["recommended"]["backend"] == "pytorch"


# -- the command -------------------------------------------------------------------------------------------


def test_cli_quick_writes_every_output(baseline: Path, dataset_yaml: Path, tmp_path: Path, capsys) -> None:
    """``detbench tune --quick`` on two backends: table, tune.json/md, plot, artifact, budgets entry."""
    out = tmp_path / "tune"
    argv = ["tune", "--quick", "--weights", str(baseline), "--data", str(dataset_yaml)]
    argv += ["--backends", "pytorch,onnxruntime", "--threads", "1", "--val-images", "8", "--blocks", "2"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    doc = json.loads((out / "tune.json").read_text())
    assert problems(doc, Tune) == []  # plot and copied_to included
    rec = doc["recommended"]
    assert rec["verified"] and Path(rec["copied_to"]).is_file()
    assert Path(rec["copied_to"]).read_bytes() == Path(rec["artifact"]).read_bytes()
    assert (out / "pareto.png").read_bytes().startswith(PNG_SIGNATURE)
    assert rec["label"] in (out / "tune.md").read_text()
    budgets = load_budgets(out / "budgets.toml")  # the same loader fixtures/budgets.toml goes through
    (absolute,) = budgets.absolute
    assert absolute.backend == rec["backend"] and absolute.threads == rec["threads"]
    assert absolute.max_ms == pytest.approx(1.5 * rec["p50_ms"], rel=1e-3)
    out_text = capsys.readouterr().out
    assert "recommended" in out_text and "pipelines on the photo-sized set" in out_text
    rp = doc["recommended_pipeline"]
    assert f"{rp['decode']}/{rp['preprocess']}/{rp['postprocess']}" in (out / "tune.md").read_text()
