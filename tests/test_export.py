"""Exports: every format builds into the cache, reuse does no work, tampering is caught, and our
ONNX agrees with ultralytics' own exporter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from detbench import cpuinfo
from detbench._fs import sha256_path
from detbench.data.synth import make_scene
from detbench.runtimes.backends import create
from detbench.runtimes.cache import ArtifactCache
from detbench.runtimes.export import FORMATS, Exporter, Int8Recipe, NncfRecipe, export_onnx_ultralytics
from detbench.runtimes.preprocess import preprocess
from detbench.verify.compare import TOLERANCES, assert_outputs_close


def _formats(workbench) -> list[str]:
    """The formats the baseline has: all but onnx-end2end (a YOLOv8 head has no one-to-one branch)."""
    have = [fmt for fmt, reason in workbench.formats().items() if reason is None]
    assert set(FORMATS) - set(have) == {"onnx-end2end"}
    return have


def test_every_format_is_cached_and_verified(workbench) -> None:
    """Each format has a cache entry whose recorded sha256 matches the artifact on disk."""
    for fmt in _formats(workbench):
        art = workbench.exporter.get(fmt)
        assert art.path.exists() and art.sha256 == sha256_path(art.path)


def test_reuse_does_no_export_work(workbench, monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm cache returns every artifact without calling any builder."""
    import detbench.runtimes.export as export

    formats = _formats(workbench)
    for fmt in formats:
        workbench.exporter.get(fmt)

    def boom(*_a, **_k):
        raise AssertionError("export ran although the cache was warm")

    builders = [n for n in dir(export) if n.startswith("build_")]
    # one builder per format; onnx-end2end is build_onnx(end2end=True)
    assert len(builders) == len(FORMATS) - 1, builders
    for name in builders:
        monkeypatch.setattr(export, name, boom)
    builds = workbench.exporter.cache.builds
    for fmt in formats:
        workbench.exporter.get(fmt)
    assert workbench.exporter.cache.builds == builds


def test_tampered_entry_is_detected_and_rebuilt(baseline: Path, tmp_path: Path) -> None:
    """Flipping one byte of a cached export makes the next lookup rebuild it."""
    exp = Exporter(baseline, cache=ArtifactCache(tmp_path))
    first = exp.get("torchscript")
    data = bytearray(first.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.path.write_bytes(bytes(data))
    again = exp.get("torchscript")
    assert exp.cache.rebuilds == 1
    assert sha256_path(again.path) == again.sha256  # a fresh, valid entry (TorchScript zips are not
    create("torchscript").load(again.path)  # byte-reproducible, so equality with `first` is not expected)


def test_cache_key_covers_settings_and_versions(baseline: Path, tmp_path: Path) -> None:
    """Opset, size and versions change the key; the INT8 recipe changes only the INT8 key."""
    exp = Exporter(baseline, cache=ArtifactCache(tmp_path))
    other = Exporter(baseline, dataclasses.replace(exp.settings, opset=16), cache=exp.cache)
    int8 = Exporter(
        baseline, dataclasses.replace(exp.settings, int8=Int8Recipe(method="MinMax")), cache=exp.cache
    )
    key = exp.cache.key
    assert key("onnx", exp.fields("onnx")) != key("onnx", other.fields("onnx"))
    assert key("onnx", exp.fields("onnx")) == key("onnx", int8.fields("onnx"))
    assert key("onnx-int8", exp.fields("onnx-int8")) != key("onnx-int8", int8.fields("onnx-int8"))
    assert {"torch", "ultralytics", "onnx", "onnxruntime", "openvino", "python"} <= set(
        exp.fields("onnx")["versions"]
    )
    nncf = Exporter(
        baseline, dataclasses.replace(exp.settings, nncf=NncfRecipe(calibration_images=8)), cache=exp.cache
    )
    changed = [f for f in FORMATS if key(f, exp.fields(f)) != key(f, nncf.fields(f))]
    assert changed == ["openvino-int8"], "the NNCF recipe keys the NNCF artifact only"
    assert "nncf" in exp.fields("openvino-int8")["versions"] and "nncf" not in exp.fields("onnx")["versions"]


@pytest.mark.parametrize(
    ("flags", "reduce_range"),
    [("avx2 fma avx512f", True), ("avx2 avx512_vnni", False), ("avx2 avx_vnni", False), ("amx_int8", False)],
)
def test_int8_reduce_range_follows_the_cpu(
    baseline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: str, reduce_range: bool
) -> None:
    """ORT INT8 uses reduce_range only without VNNI/AMX int8 dot products; the choice is in the
    cache key and the entry's meta, and an explicit recipe value is kept."""
    monkeypatch.setattr(cpuinfo, "read_cpuinfo", lambda *_: {"flags": flags})
    exp = Exporter(baseline, cache=ArtifactCache(tmp_path))
    assert exp.settings.int8.reduce_range is reduce_range
    assert exp.fields("onnx-int8")["settings"]["int8"]["reduce_range"] is reduce_range
    assert Int8Recipe(reduce_range=not reduce_range).resolved().reduce_range is (not reduce_range)


def test_onnx_metadata_records_names_and_size(workbench) -> None:
    """The exported ONNX carries class names and input size, like ultralytics' exports."""
    import onnx

    proto = onnx.load(str(workbench.exporter.get("onnx").path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert "sunglass" in meta["names"] and meta["imgsz"] == str([workbench.imgsz] * 2)


def test_onnx_agrees_with_ultralytics_exporter(workbench, tmp_path: Path) -> None:
    """Cross-check: our torch.onnx.export artifact and ultralytics' exporter compute the same head."""
    theirs_path = export_onnx_ultralytics(workbench.weights, tmp_path, workbench.imgsz)
    ours, theirs = create("onnxruntime"), create("onnxruntime")
    ours.load(workbench.exporter.get("onnx").path)
    theirs.load(theirs_path)
    x, _ = preprocess([make_scene(2, "val", i, 128)[0] for i in range(1)], workbench.imgsz)
    assert_outputs_close(theirs.run(x), ours.run(x), TOLERANCES["onnxruntime"], label="ours vs ultralytics")
    assert not np.array_equal(x, 0)


def test_torchscript_records_its_input_size(baseline: Path, tmp_path: Path) -> None:
    """A TorchScript export at a size other than 128/640 loads with that size (read from its metadata)."""
    exp = Exporter(
        baseline, dataclasses.replace(Exporter(baseline).settings, imgsz=160), cache=ArtifactCache(tmp_path)
    )
    b = create("torchscript")
    b.load(exp.get("torchscript").path)
    assert (b.spec.height, b.spec.width) == (160, 160)
