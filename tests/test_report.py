"""``detbench report``: one small in-process run checked for schema, sizes, plots and tables, and
cross-checked against ultralytics' own ``benchmark`` on the same weights and images."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import pytest

from detbench import cli
from detbench._fs import sha256_file
from detbench.data.datasets import data_yaml_text
from detbench.jsonsafe import dumps
from detbench.report.build import collect_history, load_training, render_markdown
from detbench.report.records import SCHEMA, Report
from detbench.runtimes.backends import REGISTRY
from detbench.runtimes.cache import artifact_size
from detbench.schema import from_json, problems

# The report's exit status (asserted by the run fixture) includes its latency-budget verdicts, and
# some tests compare timings: serial only, never beside an xdist neighbour.
pytestmark = pytest.mark.timing

TINY_VAL = 24  # val images in the run: enough for every class to appear, small enough for seconds
ROUNDS = 4
BATCH = 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- one shared run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first TINY_VAL val images of the dataset under test; train points at the full train split so
    an INT8 export (if the cache misses) calibrates exactly as in a normal run."""
    root = tmp_path_factory.mktemp("tiny-data")
    for sub in ("images/val", "labels/val"):
        (root / sub).mkdir(parents=True)
    for image in dataset.images("val")[:TINY_VAL]:
        shutil.copy2(image, root / "images" / "val" / image.name)
        label = dataset.label_for(image)
        if label.is_file():
            shutil.copy2(label, root / "labels" / "val" / label.name)
    text = data_yaml_text(dataset.names).replace("train: images/train", f"train: {dataset.splits['train']}")
    (root / "data.yaml").write_text(text)
    return root / "data.yaml"


def _epoch(i: int) -> dict:
    loss = 3.0 / i
    return {
        "epoch": i,
        "train_box_loss": loss,
        "train_cls_loss": 2 * loss,
        "train_dfl_loss": loss / 2,
        "val_box_loss": loss,
        "val_cls_loss": 2 * loss,
        "val_dfl_loss": loss / 2,
        "precision": 0.1 * i,
        "recall": 0.1 * i,
        "mAP50": 0.1 * i,
        "mAP50-95": 0.05 * i,
    }


@pytest.fixture(scope="module")
def weights(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the baseline with a training record beside it: the real metrics.json when the baseline
    has one, else a small one in the same format (so the training section and plot are exercised)."""
    folder = tmp_path_factory.mktemp("weights")
    dest = folder / baseline.name
    shutil.copy2(baseline, dest)
    real = baseline.parent / "metrics.json"
    if real.is_file() and json.loads(real.read_text()).get("weights_sha256") == sha256_file(baseline):
        shutil.copy2(real, folder / "metrics.json")
    else:
        doc = {
            "schema": 1,
            "weights_sha256": sha256_file(dest),
            "epochs": [_epoch(1), _epoch(2), _epoch(3)],
            "final": {"mAP50": 0.3, "mAP50-95": 0.15},
            "per_class": {},
        }
        (folder / "metrics.json").write_text(json.dumps(doc))
    return dest


def _benchmark_run(stamp: str, medians_s: dict[str, float]) -> dict:
    return {
        "datetime": stamp,
        "benchmarks": [
            {"name": n, "fullname": f"tests/benchmarks/test_latency.py::{n}", "stats": {"median": m}}
            for n, m in medians_s.items()
        ],
    }


@pytest.fixture(scope="module")
def backends(weights: Path) -> list[str]:
    """What the run measures: every backend that runs here, and has an artifact for these weights
    (end2end needs a one-to-one head), but the opt-in ones. pytorch-compile
    compiles three times in a --full report (load, the other thread count, its fresh-process first
    call), the largest part of this run; its opt-in rule is tested below on resolve_inputs, its runs
    by test_backends and the shipped suite, and its fixed batch by ``fixed_batch_artifact``."""
    return [
        n
        for n, cls in REGISTRY.items()
        if not cls.opt_in and not cls.unavailable() and not cls.model_unavailable(weights)
    ]


# The backend whose artifact the run takes at a fixed batch of 1: one no latency budget names (the
# report times budgets on dynamic-batch backends only, so a fixed openvino would drop openvino/pytorch).
FIXED = "openvino-int8"


@pytest.fixture(scope="module")
def fixed_batch_artifact(workbench, dataset, backends: list[str]) -> Path | None:
    """The baseline's FIXED artifact exported with a fixed batch of 1 (cached like every export), so
    the run has a fixed-batch row; None where that backend does not run here."""
    import dataclasses

    from detbench.runtimes.export import Exporter
    from detbench.runtimes.workbench import train_images

    if FIXED not in backends:
        return None
    settings = dataclasses.replace(workbench.exporter.settings, dynamic_batch=False)
    exporter = Exporter(workbench.weights, settings, calib_images=lambda: train_images(dataset))
    return exporter.get(REGISTRY[FIXED].artifact_format).path


@pytest.fixture(scope="module")
def run(
    pytestconfig: pytest.Config,
    weights: Path,
    tiny_data: Path,
    backends: list[str],
    fixed_batch_artifact: Path | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    """Run ``detbench report --full`` once, in-process, from a scratch cwd holding two saved benchmark
    runs, on ``backends`` with FIXED's artifact at a fixed batch of 1."""
    cwd = tmp_path_factory.mktemp("cwd")
    hist = cwd / ".benchmarks" / "Linux-CPython-3.11-64bit"
    hist.mkdir(parents=True)
    (hist / "0001_a.json").write_text(json.dumps(_benchmark_run("2026-01-01T00:00:00", {"t[onnx]": 0.004})))
    (hist / "0002_b.json").write_text(json.dumps(_benchmark_run("2026-01-02T00:00:00", {"t[onnx]": 0.005})))
    out = cwd / "report"
    argv = [
        "report",
        "--weights",
        str(weights),
        "--data",
        str(tiny_data),
        "--quick",
        "--full",
        "--backends",
        ",".join(backends),
        "--rounds",
        str(ROUNDS),
        "--batch",
        str(BATCH),
        "--out",
        str(out),
        "--threads",
        str(pytestconfig.getoption("--detbench-threads")),
    ]
    overrides = pytestconfig.getoption("--detbench-artifact")
    for item in overrides:
        argv += ["--artifact", item]
    if fixed_batch_artifact and not any(item.startswith(f"{FIXED}=") for item in overrides):
        argv += ["--artifact", f"{FIXED}={fixed_batch_artifact}"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as mp,
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        mp.chdir(cwd)
        code = cli.main(argv)
    assert code == 0, stderr.getvalue()
    return {"out": out, "stdout": stdout.getvalue(), "doc": json.loads((out / "report.json").read_text())}


@pytest.fixture(scope="module")
def doc(run: dict) -> dict:
    return run["doc"]


@pytest.fixture(scope="module")
def rows(doc: dict) -> dict[str, dict]:
    return {r["name"]: r for r in doc["backends"]}


# -- schema -----------------------------------------------------------------------------------------


def _resolve_pytorch_and_onnxruntime(
    weights: Path,
    data: Path,
    *,
    default_backends: bool,
    full: bool,
    backends: tuple[str, ...] = ("pytorch", "onnxruntime"),
):
    """report.steps.resolve_inputs for pytorch + onnxruntime (or ``backends``), with just the settings
    it reads."""
    from types import SimpleNamespace

    from detbench.report import steps

    s = SimpleNamespace(
        weights=weights,
        data=data,
        imgsz=None,
        val_images=None,
        backends=backends,
        default_backends=default_backends,
        artifacts=(),
        full=full,
    )
    return steps.resolve_inputs(s)


SCHEMA_1 = Path(__file__).parent / "data" / "report-schema1.json"  # a real run's, trimmed


class TestSchema:
    def test_every_key_and_type_comes_from_the_records(self, doc: dict) -> None:
        """report.json has every key of report.records.Report, nested records and each backend row
        included, with its JSON type, and no other key."""
        assert problems(doc, Report) == []
        assert doc["schema"] == SCHEMA
        versions = set(doc["environment"]["versions"])
        assert {"torch", "onnxruntime", "openvino", "ultralytics", "python"} <= versions

    def test_a_schema_1_file_is_what_the_records_write(self) -> None:
        """A report.json written before the records existed matches them key for key and type for
        type, and they write it back byte for byte: the public format is unchanged, and a field renamed
        in the records fails here."""
        text = SCHEMA_1.read_text(encoding="utf-8")
        old = json.loads(text)
        assert problems(old, Report) == []
        assert dumps(from_json(Report, old)) + "\n" == text

    def test_every_requested_backend_appears_pytorch_first(self, doc: dict, backends: list[str]) -> None:
        """Every backend in --backends has exactly one row, in that order, pytorch the reference."""
        assert backends[0] == "pytorch"
        assert [r["name"] for r in doc["backends"]] == backends
        assert [r["reference"] for r in doc["backends"]] == [n == "pytorch" for n in backends]

    def test_settings_echo_the_run(self, doc: dict) -> None:
        """The settings record what was asked: val images, rounds, batch, quick."""
        s = doc["settings"]
        assert (s["val_images"], s["rounds"], s["batch"], s["quick"], s["full"]) == (
            TINY_VAL,
            ROUNDS,
            BATCH,
            True,
            True,
        )
        assert all(r["accuracy"]["images"] == TINY_VAL for r in doc["backends"])
        # measured here, or reused from an earlier run on the same inputs: either way said per backend
        assert all(r["accuracy"]["source"] in ("measured", "reused") for r in doc["backends"])
        assert all(r["accuracy"]["measured_at"] <= doc["created"] for r in doc["backends"])


# -- measurements -----------------------------------------------------------------------------------


def _on_disk(path: Path) -> int:
    if path.is_dir():  # OpenVINO IR: the .xml and its weights .bin
        return os.stat(path / "model.xml").st_size + os.stat(path / "model.bin").st_size
    if path.suffix == ".xml":
        return os.stat(path).st_size + os.stat(path.with_suffix(".bin")).st_size
    return os.stat(path).st_size


class TestMeasurements:
    def test_sizes_are_the_artifacts_file_sizes(self, doc: dict, weights: Path) -> None:
        """Size is the artifact's real byte count (OpenVINO: .xml + .bin); pytorch's is the weights file."""
        for row in doc["backends"]:
            assert row["artifact_bytes"] == _on_disk(Path(row["artifact"])), row["name"]
            assert row["size_mb"] == pytest.approx(row["artifact_bytes"] / 1e6)
        assert doc["backends"][0]["artifact_bytes"] == os.stat(weights).st_size

    def test_latency_statistics_are_coherent(self, doc: dict) -> None:
        """Percentiles are ordered and each speedup lies inside its own bootstrap interval."""
        for row in doc["backends"]:
            lat, sp = row["latency_ms"], row["speedup"]
            assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"], row["name"]
            assert lat["rounds"] == ROUNDS
            assert sp["ci_low"] <= sp["ratio"] <= sp["ci_high"], row["name"]

    def test_throughput_for_dynamic_batch_only(self, doc: dict) -> None:
        """Dynamic-batch backends get images/s at the requested batch; fixed ones null with a reason."""
        assert {row["dynamic_batch"] for row in doc["backends"]} == {True, False}  # both kinds ran
        for row in doc["backends"]:
            tp = row["throughput"]
            assert tp["batch"] == BATCH
            if row["dynamic_batch"]:
                assert tp["images_per_s"] == pytest.approx(BATCH / (tp["p50_ms"] / 1e3))
                assert tp["reason"] is None
            else:
                assert tp["images_per_s"] is None
                assert "fixed batch" in tp["reason"]

    def test_efficiency_follows_from_flops_latency_and_peak(self, doc: dict) -> None:
        """Achieved GFLOP/s = GFLOPs x images/s, and its peak fraction divides by the measured peak."""
        gflops, peak = doc["model"]["gflops"], doc["peak"]["gflops_per_s"]
        assert gflops > 0
        assert peak > 0
        assert peak == pytest.approx(2 * doc["peak"]["n"] ** 3 / doc["peak"]["best_s"] / 1e9)
        for row in doc["backends"]:
            eff = row["efficiency"]
            per_image_s = row["latency_ms"]["p50"] / 1e3 / row["latency_ms"]["batch"]
            assert eff["gflops_per_s_batch1"] == pytest.approx(gflops / per_image_s)
            assert eff["peak_fraction_batch1"] == pytest.approx(
                eff["gflops_per_s_batch1"] / eff["peak_gflops_per_s"]
            )

    def test_no_backend_exceeds_its_own_precisions_peak(self, doc: dict) -> None:
        """Against GEMM peaks of its own precision from the runtimes' kernels, no backend passes 100 %."""
        peaks = doc["peak"]["peaks"]
        for row in doc["backends"]:
            eff = row["efficiency"]
            assert eff["peak_gflops_per_s"] == peaks[eff["precision"]][str(doc["settings"]["threads"])]
            for key in ("peak_fraction_batch1", "peak_fraction_batchN"):
                assert eff[key] is None or 0 < eff[key] <= 1.0, (row["name"], key, eff)
        assert {"fp32", "int8"} <= {p for p, by_t in peaks.items() if any(by_t.values())}

    def test_deployment_columns(self, doc: dict) -> None:
        """1-thread and all-cores latency, cold start, peak RSS and the per-image split per backend."""
        cols = doc["settings"]["thread_columns"]
        assert 1 in cols and len(os.sched_getaffinity(0)) in cols
        for row in doc["backends"]:
            assert set(row["latency_by_threads"]) == {str(t) for t in cols}
            assert all(v["p50"] > 0 for v in row["latency_by_threads"].values())
            fc = row["first_call"]
            assert fc["reason"] is None and fc["first_call_ms"] > 0 and fc["peak_rss_mb"] >= fc["base_rss_mb"]
            for st in (row["stages_ms"], row["photo_stages_ms"], row["recommended_photo_stages_ms"]):
                if st["reason"] is None:
                    assert st["warm_passes"] >= 1 and st["cold_end_to_end_ms"] > 0
                    parts = st["decode_ms"] + st["preprocess_ms"] + st["inference_ms"] + st["postprocess_ms"]
                    assert st["end_to_end_ms"] == pytest.approx(parts, rel=0.5)
            assert row["recommended"] is False  # no tune.json in this run
        assert doc["recommended_pipeline"]["source"] == "identical variants"  # no --tune-json either

    def test_reference_deviation_is_zero_and_others_recomputable(
        self, doc: dict, rows: dict, workbench, tiny_data: Path
    ) -> None:
        """pytorch deviates 0 from itself; onnxruntime's reported deviation is reproduced independently."""
        from detbench.data.datasets import load_dataset
        from detbench.runtimes.preprocess import preprocess
        from detbench.verify.compare import deviation

        assert rows["pytorch"]["deviation"]["max_abs"] == 0.0
        images = load_dataset(tiny_data).images("val")[: rows["onnxruntime"]["deviation"]["images"]]
        x, _ = preprocess(images, doc["settings"]["imgsz"])
        ref, out = workbench.load("pytorch").run_batched(x), workbench.load("onnxruntime").run_batched(x)
        d = deviation(ref, out)
        reported = rows["onnxruntime"]["deviation"]
        assert reported["box_max_abs"] == pytest.approx(d.box_max_abs, rel=1e-3, abs=1e-6)
        assert reported["score_max_abs"] == pytest.approx(d.score_max_abs, rel=1e-3, abs=1e-8)

    def test_environment_flags_come_from_cpuinfo(self, doc: dict) -> None:
        """Reported CPU flags are a subset of the kernel's flag list (nothing invented)."""
        text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
        flags = {
            f for line in text.splitlines() if line.startswith("flags") for f in line.split(":")[1].split()
        }
        assert set(doc["environment"]["cpu_flags"]) <= flags


# -- outputs ----------------------------------------------------------------------------------------


class TestOutputs:
    def test_all_four_plots_are_valid_pngs(self, run: dict) -> None:
        """Every plot is drawn (training record and history exist here) and decodes as a PNG."""
        from PIL import Image

        plots = run["doc"]["plots"]
        assert set(plots) == {"latency_vs_size", "per_class_map50", "training_curves", "latency_history"}
        for key, name in plots.items():
            assert name, f"{key} was not drawn: {run['doc']['notes']}"
            path = run["out"] / name
            assert path.read_bytes()[:8] == PNG_SIGNATURE
            with Image.open(path) as im:
                im.verify()

    def test_markdown_has_the_summary_table(self, run: dict) -> None:
        """report.md holds the summary table with one row per backend carrying the JSON's numbers."""
        md = (run["out"] / "report.md").read_text()
        assert "| backend | size MB | p50 ms |" in md
        for row in run["doc"]["backends"]:
            line = next(ln for ln in md.splitlines() if ln.startswith(f"| {row['name']} |"))
            assert f"{row['size_mb']:.2f}" in line
            assert f"{row['latency_ms']['p50']:.2f}" in line
            assert f"{row['accuracy']['mAP50-95']:.4f}" in line

    def test_terminal_table_lists_every_backend(self, run: dict) -> None:
        """The printed table names every backend and the speedup column."""
        assert "speedup" in run["stdout"]
        for row in run["doc"]["backends"]:
            assert row["name"] in run["stdout"]

    def test_training_and_history_sections(self, doc: dict, weights: Path) -> None:
        """The training record beside the weights and both saved benchmark runs are picked up."""
        assert doc["training"]["source"] == str(weights.parent / "metrics.json")
        assert doc["training"]["matches_weights"] is True
        assert doc["training"]["epochs"]
        key = "tests/benchmarks/test_latency.py::t[onnx]"
        mine = [r for r in doc["history"]["runs"] if Path(r["file"]).name in ("0001_a.json", "0002_b.json")]
        assert [r["medians_ms"][key] for r in mine] == pytest.approx([4.0, 5.0])

    def test_every_note_is_said_once(self, run: dict) -> None:
        """A reason shared by many skipped runs (every GEMM size and pass of a missing bf16) is one note."""
        notes = run["doc"]["notes"]
        assert len(set(notes)) == len(notes), notes

    def test_json_and_markdown_are_written_whole(self, run: dict) -> None:
        """No temp files are left behind by the atomic writes."""
        assert not [p.name for p in run["out"].iterdir() if p.name.startswith(".")]


# -- small units and errors -------------------------------------------------------------------------


class TestPieces:
    def test_openvino_size_counts_xml_and_bin(self, tmp_path: Path) -> None:
        """An IR folder or its .xml counts both files; other files in the folder do not count."""
        ir = tmp_path / "ir"
        ir.mkdir()
        (ir / "model.xml").write_bytes(b"x" * 10)
        (ir / "model.bin").write_bytes(b"b" * 100)
        (ir / "notes.txt").write_bytes(b"n" * 1000)
        assert artifact_size(ir) == artifact_size(ir / "model.xml") == 110

    def test_history_lists_unreadable_files_with_a_reason(self, tmp_path: Path) -> None:
        """A broken or foreign JSON is skipped by name with its reason; good runs come oldest first."""
        (tmp_path / "b.json").write_text(json.dumps(_benchmark_run("2026-02-01", {"x": 0.002})))
        (tmp_path / "a.json").write_text(json.dumps(_benchmark_run("2026-03-01", {"x": 0.001})))
        (tmp_path / "bad.json").write_text("{not json")
        (tmp_path / "foreign.json").write_text(json.dumps({"hello": 1}))
        hist = collect_history([tmp_path, tmp_path / "absent"])
        assert [Path(r["file"]).name for r in hist["runs"]] == ["b.json", "a.json"]
        assert sorted(Path(s.split(":")[0]).name for s in hist["skipped"]) == ["bad.json", "foreign.json"]
        assert collect_history([tmp_path / "absent"])["note"].startswith("no saved benchmark runs")

    @pytest.mark.parametrize("default_backends", [True, False])
    def test_a_backend_this_machine_cannot_run_is_left_out_only_by_default(
        self, weights: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, default_backends: bool
    ) -> None:
        """The default set drops a backend whose CPU/runtime check fails, with a note; a chosen one stays
        (loading it then fails with the same reason)."""
        monkeypatch.setattr(REGISTRY["onnxruntime"], "unavailable", classmethod(lambda cls: "no such ISA"))
        inp = _resolve_pytorch_and_onnxruntime(
            weights, tiny_data, default_backends=default_backends, full=False
        )
        if default_backends:
            assert inp.names == ["pytorch"]
            assert inp.notes == ["onnxruntime left out: no such ISA"]
        else:
            assert inp.names == ["pytorch", "onnxruntime"]
            assert inp.notes == []

    def test_end2end_is_left_out_by_default_for_a_model_without_a_one_to_one_head(
        self, weights: Path, tiny_data: Path
    ) -> None:
        """YOLOv8n has no end2end artifact: the default set drops the backend with its one-line reason."""
        inp = _resolve_pytorch_and_onnxruntime(
            weights, tiny_data, default_backends=True, full=True, backends=("pytorch", "onnxruntime-end2end")
        )
        assert inp.names == ["pytorch"]
        assert inp.notes == [
            "onnxruntime-end2end left out: yolov8n's Detect head has no one-to-one branch: only NMS-free "
            "families (YOLO26, YOLOv10) export end2end"
        ]

    @pytest.mark.parametrize("full", [False, True])
    def test_an_opt_in_backend_runs_only_when_named_or_full(
        self, weights: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, full: bool
    ) -> None:
        """The default run leaves out a backend that says why it is opt-in (pytorch-compile's compile),
        with a note; --full keeps it."""
        monkeypatch.setattr(REGISTRY["onnxruntime"], "opt_in", "costly")
        inp = _resolve_pytorch_and_onnxruntime(weights, tiny_data, default_backends=True, full=full)
        assert inp.names == (["pytorch", "onnxruntime"] if full else ["pytorch"])
        assert inp.notes == (
            []
            if full
            else ["onnxruntime left out of the default run (costly): name it in --backends, or run --full"]
        )
        assert REGISTRY["pytorch-compile"].opt_in and not REGISTRY["pytorch"].opt_in

    def test_a_report_without_full_renders_what_it_left_out(self, doc: dict) -> None:
        """No throughput, thread columns, first calls or roofline: text saying --full, not a crash."""
        from rich.console import Console

        from detbench.report.build import FULL_ONLY
        from detbench.report.render import print_table

        edited = json.loads(json.dumps(doc))
        edited["settings"].update(full=False, thread_columns=[edited["settings"]["threads"]])
        edited["peak"].update(runs=[], peaks={}, candidates={}, sizes=[], n=None, repeats=0)
        for r in edited["backends"]:
            r["throughput"].update(rounds=0, images_per_s=None, p50_ms=None, reason=FULL_ONLY)
            r["first_call"] = {k: None for k in r["first_call"]} | {"reason": FULL_ONLY}
            r["efficiency"].update(
                peak_gflops_per_s=None, peak_fraction_batch1=None, peak_fraction_batchN=None
            )
        md = render_markdown(edited)
        assert f"{', '.join(r['name'] for r in edited['backends'])}: no throughput: {FULL_ONLY}" in md
        assert "roofline" in md and "measured with --full" in md and "throughput over" not in md
        out = io.StringIO()
        print_table(edited, Console(file=out, width=250))
        assert "share of each backend" not in out.getvalue()

    def test_training_record_absent_or_for_other_weights_is_said(self, tmp_path: Path) -> None:
        """No metrics.json: the note says so; one for other weights: shown but flagged."""
        w = tmp_path / "w.pt"
        w.write_bytes(b"not really weights")
        assert "no metrics.json" in load_training(w)["note"]
        other = {"weights_sha256": "0" * 64, "epochs": [_epoch(1)]}
        (tmp_path / "metrics.json").write_text(json.dumps(other))
        tr = load_training(w)
        assert tr["matches_weights"] is False
        assert "other weights" in tr["note"]
        assert tr["epochs"] == other["epochs"]

    def test_markdown_renders_null_throughput_and_missing_training(self, doc: dict) -> None:
        """A fixed-batch backend and an absent training record render as text, not a crash."""
        edited = json.loads(json.dumps(doc))
        edited["backends"][1]["throughput"].update(images_per_s=None, p50_ms=None, reason="fixed batch of 1")
        edited["training"].update(source=None, epochs=[], note="no metrics.json here")
        md = render_markdown(edited)
        assert "no throughput: fixed batch of 1" in md
        assert "no metrics.json here" in md

    @pytest.mark.parametrize(
        ("argv", "code", "needle"),
        [
            (["report", "--backends", "tensorrt"], 2, "unknown backend(s) tensorrt"),
            (["report", "--weights", "/nonexistent/w.pt"], 2, "/nonexistent/w.pt: no such file"),
            (["report", "--rounds", "0"], 2, "must be positive"),
        ],
    )
    def test_bad_arguments_fail_in_one_line(
        self, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, needle: str
    ) -> None:
        """Bad report arguments exit non-zero with one line naming the argument."""
        assert cli.main(argv) == code
        err = capsys.readouterr().err.strip()
        assert needle in err
        assert len(err.splitlines()) == 1

    def test_out_that_is_a_file_fails_before_measuring(
        self, tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--out naming an existing file is refused at once, in one line naming it."""
        clash = tmp_path / "report"
        clash.write_text("")
        assert cli.main(["report", "--weights", str(baseline), "--out", str(clash)]) == 2  # argparse
        err = capsys.readouterr().err.strip()
        assert f"--out: {clash}: exists and is not a directory" in err
        assert len(err.splitlines()) == 1


# -- the peer tool ----------------------------------------------------------------------------------

# Only failures that are the network's, not any message that happens to contain a docs URL.
_NETWORK_HINTS = (
    "socketblockederror",
    "a test tried to use socket",
    "connectionerror",
    "urlopen error",
    "name or service not known",
    "temporary failure in name resolution",
)


def _peer(weights: Path, data: Path, imgsz: int, fmt: str) -> tuple[float, float]:
    """(size MiB, mAP50-95) of one format from ultralytics.utils.benchmarks.benchmark."""
    pytest.importorskip("polars", reason="ultralytics' benchmark() tabulates with polars")
    from ultralytics.utils.benchmarks import benchmark

    errors: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage())

    grab = Grab()
    logging.getLogger("ultralytics").addHandler(grab)
    try:
        with warnings.catch_warnings():
            # The peer tool's own deprecation notices (its exporter, polars) are not under test here.
            warnings.simplefilter("ignore")
            df = benchmark(model=str(weights), data=str(data), imgsz=imgsz, format=fmt, device="cpu")
    finally:
        logging.getLogger("ultralytics").removeHandler(grab)
    col = {c.split("(")[0].split("❔")[0].strip(): c for c in df.columns}
    status = df[col["Status"]][0]
    if status != "✅":
        reason = "; ".join(errors) or f"status {status}"
        if any(h in reason.lower() for h in _NETWORK_HINTS):
            pytest.skip(f"ultralytics benchmark(format={fmt!r}) cannot run offline: {reason}")
        pytest.fail(f"ultralytics benchmark(format={fmt!r}) failed: {reason}")
    return float(df[col["Size"]][0]), float(df[col["metrics/mAP50-95"]][0])


# Peer format -> our backend, and how close the sizes must be. The .pt is the same file in both tools.
# Exports are not byte-identical: ultralytics' exporter writes other metadata and (ONNX) a slightly
# different graph around the same fp32 weights. Measured on yolov8n/128: ONNX 12,108,788 B (theirs)
# vs 12,129,950 B (ours), TorchScript 12,334,238 vs 12,385,932 — both within 0.5%; weights dominate.
PEER_FORMATS = [("-", "pytorch", 0.0), ("onnx", "onnxruntime", 0.02), ("torchscript", "torchscript", 0.02)]


def test_agrees_with_ultralytics_benchmark(
    rows: dict, doc: dict, weights: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same weights, images and size: sizes match ultralytics' benchmark like for like and mAP50-95
    agrees within 0.01 for every format both tools run."""
    monkeypatch.chdir(tmp_path)  # the peer appends to ./benchmarks.log
    peer_weights = tmp_path / weights.name  # and exports next to the weights
    shutil.copy2(weights, peer_weights)
    for fmt, ours, rel in PEER_FORMATS:
        if ours not in rows:
            continue
        size_mib, map5095 = _peer(peer_weights, tiny_data, doc["settings"]["imgsz"], fmt)
        mine_mib = rows[ours]["artifact_bytes"] / 2**20  # the peer reports MiB, rounded to 0.1
        assert mine_mib == pytest.approx(size_mib, rel=rel, abs=0.05), f"{ours} vs ultralytics {fmt}"
        assert rows[ours]["accuracy"]["mAP50-95"] == pytest.approx(map5095, abs=0.01), f"{ours} vs {fmt}"
