"""Interoperability with ultralytics both ways: its exports run in our backends, ours in its YOLO()."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from detbench._fs import sha256_file
from detbench.data.images import load_image
from detbench.data.synth import make_scene
from detbench.errors import ModelFileError
from detbench.runtimes import metadata
from detbench.runtimes.backends import REGISTRY, BaseBackend, create
from detbench.runtimes.cache import ArtifactCache
from detbench.runtimes.export import FORMATS, openvino_available, toolchain_versions
from detbench.runtimes.postprocess import Detections, postprocess
from detbench.runtimes.preprocess import preprocess
from detbench.verify.compare import TOLERANCES, assert_detections_match, assert_outputs_close

ASSETS = Path(__import__("ultralytics").__file__).parent / "assets"
# The first backend registered for a format runs it as exported (openvino, not openvino-bf16).
BACKEND_OF: dict[str, str] = {}
for _name, _cls in REGISTRY.items():
    if _cls.artifact_format:
        BACKEND_OF.setdefault(_cls.artifact_format, _name)
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")


def _fmt_param(fmt: str):
    marks = [pytest.mark.openvino, needs_openvino] if fmt.startswith("openvino") else []
    return pytest.param(fmt, id=fmt, marks=marks)


# ultralytics' export format -> the file or folder it writes next to ``best.pt`` (its naming).
PEER_LAYOUTS = {"onnx": "best.onnx", "torchscript": "best.torchscript", "openvino": "best_openvino_model"}


def _files(root: Path) -> set[Path]:
    if root.is_file():
        return {root}
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def ultralytics_export(weights: Path, fmt: str, imgsz: int, cache: ArtifactCache) -> Path:
    """YOLO(weights).export(format=fmt) in ultralytics' own layout, cached like our exports."""

    def build(dest: Path) -> None:
        from ultralytics import YOLO
        from ultralytics.utils import USER_CONFIG_DIR

        from detbench._compat import quiet_torch_exporters

        work = dest.parent / "work"
        work.mkdir()
        shutil.copy2(weights, work / "best.pt")  # ultralytics writes its export next to the weights
        before = _files(USER_CONFIG_DIR)
        cwd = os.getcwd()
        os.chdir(work)  # anything it might fetch would land here, where the check below sees it
        try:
            with quiet_torch_exporters():
                out = Path(YOLO(str(work / "best.pt")).export(format=fmt, imgsz=imgsz, device="cpu"))
        finally:
            os.chdir(cwd)
        fetched = (_files(USER_CONFIG_DIR) - before) | (_files(work) - _files(out) - {work / "best.pt"})
        assert not [p for p in fetched if p.name != "settings.json"], f"export fetched {fetched}"
        assert out.name == PEER_LAYOUTS[fmt], out
        shutil.move(out, dest)
        shutil.rmtree(work)

    fields = {"peer": "ultralytics", "format": fmt, "imgsz": imgsz, "weights_sha256": sha256_file(weights)}
    fields["versions"] = toolchain_versions()
    return cache.get_or_build(f"ultralytics-{fmt}", fields, PEER_LAYOUTS[fmt], build).path


@pytest.fixture(scope="module")
def peer_export(workbench):
    """ultralytics' export of the baseline for one format, built once into the export cache."""
    made: dict[str, Path] = {}

    def get(fmt: str) -> Path:
        if fmt not in made:
            made[fmt] = ultralytics_export(workbench.weights, fmt, workbench.imgsz, workbench.exporter.cache)
        return made[fmt]

    return get


def _scenes(n: int) -> list[np.ndarray]:
    return [np.asarray(make_scene(7, "val", i, 160)[0]) for i in range(n)]


# -- in: ultralytics' exports in our backends ------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fmt", [_fmt_param(f) for f in PEER_LAYOUTS])
def test_ultralytics_export_runs_in_our_backend(
    workbench, reference: BaseBackend, peer_export, fmt: str
) -> None:
    """ultralytics' own export, in its own layout, loads as a user artifact, its metadata fits, and its
    raw head matches the reference within the backend's tolerance."""
    path = peer_export(fmt)
    meta = metadata.read_metadata(path)
    assert meta["names"] == dict(enumerate(workbench.names)) and meta["imgsz"] == [workbench.imgsz] * 2
    name = BACKEND_OF[fmt]
    user = dataclasses.replace(workbench, overrides={name: path}).load(name)
    x, _ = preprocess(_scenes(1), workbench.imgsz)
    assert_outputs_close(reference.run(x), user.run(x), TOLERANCES[name], label=f"ultralytics {fmt}")


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("fmt", "field", "edit"),
    [
        pytest.param(
            "onnx",
            "names",
            lambda m: {**m, "names": {**m["names"], 0: "hat", 1: "sunglass"}},
            id="onnx-names",
        ),
        pytest.param("onnx", "imgsz", lambda m: {**m, "imgsz": [640, 640]}, id="onnx-imgsz"),
        pytest.param("torchscript", "names", lambda m: {**m, "names": {0: "a"}}, id="torchscript-count"),
        pytest.param(
            "openvino",
            "names",
            lambda m: {**m, "names": {**m["names"], 9: "boots"}},
            id="openvino-names",
            marks=[pytest.mark.openvino, needs_openvino],
        ),
        pytest.param(
            "openvino",
            "stride",
            lambda m: {**m, "stride": 64},
            id="openvino-stride",
            marks=[pytest.mark.openvino, needs_openvino],
        ),
    ],
)
def test_metadata_that_does_not_fit_is_refused(
    workbench, peer_export, tmp_path: Path, fmt: str, field: str, edit
) -> None:
    """An ultralytics export whose metadata contradicts the baseline is refused naming the field."""
    path = _with_metadata(peer_export(fmt), tmp_path, edit)
    name = BACKEND_OF[fmt]
    with pytest.raises(ModelFileError, match=f"metadata '{field}'") as exc:
        dataclasses.replace(workbench, overrides={name: path}).load(name)
    assert exc.value.path == path


def test_unreadable_metadata_is_refused(workbench, peer_export, tmp_path: Path) -> None:
    """Metadata that does not parse is an error naming the file, not a silently skipped fit check."""
    path = _with_metadata(peer_export("onnx"), tmp_path, lambda m: {**m, "names": "{0: 'sunglass'"})
    with pytest.raises(ModelFileError, match="unreadable ultralytics metadata") as exc:
        dataclasses.replace(workbench, overrides={"onnxruntime": path}).load("onnxruntime")
    assert exc.value.path == path


@pytest.mark.openvino
@needs_openvino
def test_openvino_ir_by_xml_and_ambiguous_folder(workbench, peer_export, tmp_path: Path) -> None:
    """ultralytics' IR loads by its .xml too (metadata.yaml read beside it); a folder with two IRs is
    refused listing both, rather than guessing."""
    folder = _with_metadata(peer_export("openvino"), tmp_path, lambda m: {**m, "imgsz": [96, 96]})
    with pytest.raises(ModelFileError, match="metadata 'imgsz'"):
        dataclasses.replace(workbench, overrides={"openvino": folder / "best.xml"}).load("openvino")
    for ext in ("xml", "bin"):
        shutil.copy2(folder / f"best.{ext}", folder / f"other.{ext}")
    with pytest.raises(ModelFileError, match=r"found best\.xml, other\.xml") as exc:
        create("openvino").load(folder)
    assert exc.value.path == folder


def _with_metadata(src: Path, tmp_path: Path, edit) -> Path:
    """A copy of an export whose ultralytics metadata is ``edit(metadata)``, the graph untouched."""
    meta = edit(metadata.read_metadata(src))
    dest = tmp_path / src.name
    if src.is_dir():
        shutil.copytree(src, dest)
        metadata.write_openvino_metadata(dest, meta)
    elif src.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(src))
        metadata.add_onnx_metadata(proto, meta)
        onnx.save(proto, str(dest))
    else:
        import torch

        from detbench._compat import quiet_torch_exporters

        with quiet_torch_exporters():
            torch.jit.load(str(src)).save(str(dest), _extra_files=metadata.torchscript_extra_files(meta))
    return dest


# -- out: our exports in ultralytics' YOLO() -------------------------------------------------------


def _yolo_predict(path: Path, rgb: np.ndarray, imgsz: int) -> tuple[Detections, dict]:
    from ultralytics import YOLO

    r = YOLO(str(path), task="detect").predict(
        source=np.ascontiguousarray(rgb[..., ::-1]),
        imgsz=imgsz,
        conf=0.25,
        iou=0.7,
        device="cpu",
        verbose=False,
    )[0]
    names = tuple(r.names[i] for i in sorted(r.names))
    b = r.boxes
    return Detections(b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(np.int64), names), r.names


def _skip_what_the_baseline_lacks(workbench, fmt: str) -> None:
    """onnx-end2end is for NMS-free heads (tests/test_end2end.py checks it against their predict)."""
    if reason := workbench.formats()[fmt]:
        pytest.skip(reason)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fmt", [_fmt_param(f) for f in FORMATS])
def test_our_export_predicts_in_ultralytics_yolo(
    workbench, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """YOLO(<our export>).predict(imgsz=128) runs, names the classes, and finds the boxes our pipeline
    finds on the same artifact (a user's deploy code works on our artifacts unchanged)."""
    _skip_what_the_baseline_lacks(workbench, fmt)
    path = workbench.exporter.get(fmt).path
    if fmt.startswith("openvino"):
        _pin_openvino_fp32(monkeypatch)
    name = BACKEND_OF[fmt]
    ours_backend = dataclasses.replace(workbench, overrides={}).load(name)
    scenes = _scenes(2)
    # A non-square image too: without metadata YOLO() letterboxes it to 128x96, which a fixed graph refuses.
    images = [scenes[0], scenes[1][:112], np.asarray(load_image(ASSETS / "zidane.jpg"))]
    found = 0
    for rgb in images:
        x, infos = preprocess([rgb], workbench.imgsz)
        ours = postprocess(ours_backend.run(x), infos, workbench.names)[0]
        theirs, names = _yolo_predict(path, rgb, workbench.imgsz)
        assert names == dict(enumerate(workbench.names))
        assert_detections_match([ours], [theirs], TOLERANCES[name], label=f"YOLO({path.name})")
        found += len(theirs)
    assert found > 0, "no detections at all: the comparison proved nothing"


def _pin_openvino_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """AutoBackend compiles with OpenVINO's CPU default precision, bf16 on CPUs with avx512_bf16/AMX
    (this one): scores then move ~2e-3, past the fp32 row. The comparison is about the artifact and
    its metadata, so pin fp32 as our openvino backend does; bf16 is a runtime choice of its own."""
    import openvino as ov

    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    print(f"OpenVINO CPU default precision: {default}; YOLO() compared at f32")
    original = ov.Core.compile_model

    def compile_fp32(self, model, device_name=None, config=None, *args, **kwargs):
        config = {**(config or {}), "INFERENCE_PRECISION_HINT": "f32"}
        return original(self, model, device_name, config, *args, **kwargs)

    monkeypatch.setattr(ov.Core, "compile_model", compile_fp32)


@pytest.mark.parametrize("fmt", [_fmt_param(f) for f in FORMATS])
def test_our_export_carries_ultralytics_metadata(workbench, fmt: str) -> None:
    """Every export records what AutoBackend reads, with a fixed (not dynamic) input size."""
    _skip_what_the_baseline_lacks(workbench, fmt)
    meta = metadata.read_metadata(workbench.exporter.get(fmt).path)
    assert meta["names"] == dict(enumerate(workbench.names))
    assert meta["imgsz"] == [workbench.imgsz] * 2 and meta["stride"] == 32 and meta["batch"] == 1
    assert meta["task"] == "detect" and meta["args"]["dynamic"] is False and meta["args"]["nms"] is False
