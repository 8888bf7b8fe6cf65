"""Workbench.from_options: the one constructor of a run's inputs, and its lazy INT8 calibration set."""

from __future__ import annotations

from pathlib import Path

import pytest

from detbench.errors import BackendError, DatasetError
from detbench.runtimes.cache import ArtifactCache
from detbench.runtimes.workbench import Workbench


def test_options_resolve_weights_size_classes_threads_and_overrides(baseline: Path, model_info) -> None:
    """Defaults come from the weights; threads and BACKEND=PATH overrides are parsed into the workbench."""
    bench = Workbench.from_options(baseline, threads=2, artifacts=["onnxruntime=model.onnx"])
    assert (bench.weights, bench.imgsz) == (baseline.resolve(), model_info.imgsz)
    assert bench.names == model_info.names
    assert bench.settings.threads == 2
    assert bench.overrides == {"onnxruntime": Path("model.onnx").resolve()}
    assert Workbench.from_options(baseline, imgsz=64).imgsz == 64
    with pytest.raises(BackendError, match="BACKEND=PATH"):
        Workbench.from_options(baseline, artifacts=["onnxruntime"])


def test_the_dataset_is_read_only_when_an_int8_export_is_built(baseline: Path, tmp_path: Path) -> None:
    """fp32 exports never touch ``data``; the first INT8 build reads it and names a bad file."""
    missing = tmp_path / "absent" / "data.yaml"
    bench = Workbench.from_options(baseline, missing)
    bench.exporter.cache = ArtifactCache(tmp_path / "cache")
    assert bench.artifact("onnxruntime").is_file()
    with pytest.raises(DatasetError, match=r"data\.yaml not found"):
        bench.artifact("onnxruntime-int8")


def test_a_cached_int8_artifact_needs_no_calibration_images(
    workbench, baseline: Path, tmp_path: Path
) -> None:
    """An INT8 artifact already in the cache is served even when no calibration set can be read."""
    built = workbench.artifact("onnxruntime-int8")
    bench = Workbench.from_options(baseline, tmp_path / "absent.yaml")
    assert bench.artifact("onnxruntime-int8") == built
