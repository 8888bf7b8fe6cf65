"""The INT8 bounds catch what they exist for: a naively quantized model (whole graph, MinMax)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from detbench.runtimes.backends import create
from detbench.runtimes.cache import ArtifactCache
from detbench.runtimes.export import Exporter, Int8Recipe
from detbench.runtimes.preprocess import load_image, preprocess
from detbench.verify.accuracy import evaluate
from detbench.verify.compare import TOLERANCES, OutputMismatch, assert_accuracy_close, assert_outputs_close

pytestmark = pytest.mark.equivalence

NAIVE = Int8Recipe(calibration_images=64, method="MinMax", keep_fp32=(), reduce_range=False)


@pytest.fixture(scope="module")
def naive_int8(workbench, tmp_path_factory: pytest.TempPathFactory):
    exp = Exporter(
        workbench.weights,
        dataclasses.replace(workbench.exporter.settings, int8=NAIVE),
        cache=ArtifactCache(tmp_path_factory.mktemp("naive-int8")),
        calib_images=workbench.calib_images,
    )
    backend = create("onnxruntime-int8")
    backend.load(exp.get("onnx-int8").path)
    return backend


def test_naive_int8_fails_the_accuracy_bound(naive_int8, reference, dataset, model_info) -> None:
    """Quantizing the Detect head too collapses mAP; the INT8 accuracy bound fails loudly."""
    kw = {"imgsz": model_info.imgsz, "limit": 64}
    ref = evaluate(reference, dataset, **kw).to_dict()
    out = evaluate(naive_int8, dataset, **kw).to_dict()
    assert out["mAP50"] < ref["mAP50"] - 0.1, "the naive recipe is expected to be clearly worse"
    with pytest.raises(OutputMismatch, match="mAP50"):
        assert_accuracy_close(ref, out, TOLERANCES["onnxruntime-int8"], label="naive int8")


def test_naive_int8_fails_the_raw_bound(naive_int8, reference, dataset, model_info, tmp_path: Path) -> None:
    """The raw-head bound for INT8 is loose, but not loose enough to pass a broken quantization."""
    x, _ = preprocess([load_image(p) for p in dataset.images("val")[:8]], model_info.imgsz)
    with pytest.raises(OutputMismatch):
        assert_outputs_close(reference.run(x), naive_int8.run(x), TOLERANCES["onnxruntime-int8"])


def _report(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from detbench import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue() + err.getvalue()


REPORT_ARGS = ["report", "--backends", "onnxruntime-int8", "--quick", "--val-images", "64", "--rounds", "40"]


def test_report_exits_1_on_the_naive_int8(naive_int8, tmp_path: Path) -> None:
    """detbench report --artifact onnxruntime-int8=naive.onnx: FAIL onnxruntime-int8, exit 1."""
    code, out = _report(
        [*REPORT_ARGS, "--artifact", f"onnxruntime-int8={naive_int8.artifact}", "--out", str(tmp_path / "r")]
    )
    assert code == 1, out
    assert "PASS pytorch" in out
    assert "FAIL onnxruntime-int8" in out and "accuracy mAP" in out


def test_report_exits_0_on_the_committed_int8(tmp_path: Path) -> None:
    """The same command on the committed recipe's INT8: PASS for both backends, exit 0."""
    code, out = _report([*REPORT_ARGS, "--out", str(tmp_path / "r")])
    assert code == 0, out
    assert "PASS pytorch" in out and "PASS onnxruntime-int8" in out
