"""Bad model files and tensors: every backend refuses them with a typed one-line error naming the file."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from detbench.errors import BackendError, ModelFileError
from detbench.model.checkpoint import anchor_count, load_detection_model
from detbench.runtimes.backends import create
from detbench.runtimes.cache import ArtifactCache
from detbench.runtimes.workbench import Workbench

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 123\n"
)

needs_openvino = [pytest.mark.openvino]  # the root conftest fails these when openvino cannot import


def _random_bytes(data: bytes) -> bytes:
    return np.random.default_rng(0).bytes(4096)


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "random-bytes": _random_bytes,
    "lfs-pointer": lambda data: LFS_POINTER.encode(),
}
# What each backend loads; both ONNX backends get the fp32 ONNX file (same loader, no INT8 export needed).
SOURCES = {
    "pytorch": "pytorch",
    "torchscript": "torchscript",
    "onnxruntime": "onnxruntime",
    "onnxruntime-int8": "onnxruntime",
}


@pytest.fixture(scope="module")
def sources(workbench) -> dict[str, Path]:
    """One good file per backend, from which the corrupt copies are made."""
    return {name: workbench.artifact(src) for name, src in SOURCES.items()}


def _assert_refused(exc: ModelFileError, offending: Path, *fragments: str) -> None:
    message = str(exc)
    assert exc.path == offending
    assert str(offending) in message
    assert "\n" not in message, f"message is not one line: {message!r}"
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in {message!r}"


class TestCorruptFiles:
    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("corruption", CORRUPTIONS)
    @pytest.mark.parametrize("name", SOURCES)
    def test_corrupt_file_is_refused(self, sources, tmp_path: Path, name: str, corruption: str) -> None:
        """Empty, truncated, random and Git-LFS-pointer files raise ModelFileError naming the file."""
        good = sources[name]
        bad = tmp_path / good.name
        bad.write_bytes(CORRUPTIONS[corruption](good.read_bytes()))
        with pytest.raises(ModelFileError) as exc:
            create(name).load(bad)
        _assert_refused(exc.value, bad, *(["LFS"] if corruption == "lfs-pointer" else []))

    @pytest.mark.parametrize("corruption", CORRUPTIONS)
    def test_load_detection_model_refuses_corrupt_checkpoint(
        self, baseline: Path, tmp_path: Path, corruption: str
    ) -> None:
        """The loader every export starts from refuses the same corpus, in one line."""
        bad = tmp_path / "best.pt"
        bad.write_bytes(CORRUPTIONS[corruption](baseline.read_bytes()))
        with pytest.raises(ModelFileError) as exc:
            load_detection_model(bad)
        _assert_refused(exc.value, bad, *(["LFS"] if corruption == "lfs-pointer" else []))

    @pytest.mark.parametrize(
        ("name", "other"),
        [
            ("pytorch", "torchscript"),
            ("torchscript", "pytorch"),
            ("onnxruntime", "torchscript"),
            pytest.param("openvino", "onnxruntime", marks=needs_openvino),
        ],
    )
    def test_file_of_another_format_is_refused(self, sources, name: str, other: str) -> None:
        """A valid model of the wrong format is refused by name, not crashed on."""
        with pytest.raises(ModelFileError) as exc:
            create(name).load(sources[other])
        _assert_refused(exc.value, sources[other])

    def test_torchscript_that_is_not_a_detector(self, tmp_path: Path) -> None:
        """A TorchScript archive whose input size cannot be found is refused naming the file."""
        import torch

        from detbench._compat import quiet_torch_exporters

        path = tmp_path / "linear.torchscript"
        with quiet_torch_exporters():
            torch.jit.trace(torch.nn.Linear(5, 2), torch.zeros(1, 5)).save(str(path))
        with pytest.raises(ModelFileError) as exc:
            create("torchscript").load(path)
        _assert_refused(exc.value, path, "input size")


# -- OpenVINO IR: an .xml and its .bin, loaded by folder or by .xml ------------------------------------


def _xml_garbage(xml: Path, _bin: Path) -> Path:
    xml.write_bytes(np.random.default_rng(0).bytes(4096))
    return xml


def _xml_wrong_root(xml: Path, _bin: Path) -> Path:
    xml.write_text('<?xml version="1.0"?>\n<html><body>not a model</body></html>\n')
    return xml


def _xml_truncated(xml: Path, _bin: Path) -> Path:
    xml.write_bytes(xml.read_bytes()[: xml.stat().st_size // 2])
    return xml


def _bin_missing(_xml: Path, bin_: Path) -> Path:
    bin_.unlink()
    return bin_


def _bin_truncated(_xml: Path, bin_: Path) -> Path:
    bin_.write_bytes(bin_.read_bytes()[: bin_.stat().st_size // 2])
    return bin_.with_suffix(".xml")  # OpenVINO finds the bad weights while reading the IR


def _lfs(which: str) -> Callable[[Path, Path], Path]:
    def corrupt(xml: Path, bin_: Path) -> Path:
        target = xml if which == "xml" else bin_
        target.write_text(LFS_POINTER)
        return target

    return corrupt


IR_CORRUPTIONS = {
    "xml-garbage": (_xml_garbage, "not valid XML"),
    "xml-wrong-root": (_xml_wrong_root, "<net>"),
    "xml-truncated": (_xml_truncated, "OpenVINO cannot read"),
    "bin-missing": (_bin_missing, "not found"),
    "bin-truncated": (_bin_truncated, "OpenVINO cannot read"),
    "xml-lfs-pointer": (_lfs("xml"), "LFS"),
    "bin-lfs-pointer": (_lfs("bin"), "LFS"),
}


@pytest.mark.openvino
@pytest.mark.timeout(120)
@pytest.mark.parametrize("by", ["folder", "xml"])
@pytest.mark.parametrize("corruption", IR_CORRUPTIONS)
def test_corrupt_openvino_ir_is_refused(workbench, tmp_path: Path, corruption: str, by: str) -> None:
    """Garbage or truncated .xml, missing or truncated .bin, LFS pointers: ModelFileError naming the file."""
    ir = tmp_path / "openvino_model"
    shutil.copytree(workbench.artifact("openvino"), ir)
    corrupt, fragment = IR_CORRUPTIONS[corruption]
    offending = corrupt(ir / "model.xml", ir / "model.bin")
    with pytest.raises(ModelFileError) as exc:
        create("openvino").load(ir if by == "folder" else ir / "model.xml")
    _assert_refused(exc.value, offending, fragment)


# -- hand-made ONNX graphs: cheap artifacts with exactly the defect under test ----------------------


def _tiny_onnx(
    path: Path,
    *,
    batch: int | str = "N",
    channels: int = 3,
    size: int = 128,
    outputs: int = 14,
    anchors: int | None = None,
    transpose: bool = False,
    external: str | None = None,
) -> Path:
    """images (batch, channels, size, size) -> 1x1 Conv -> (N, outputs, anchors) [-> transposed].

    ``external``: store the Conv weight as external data at this location (relative to ``path``'s
    folder, or absolute), writing the bytes there so only detbench's check can stop the load.
    """
    from onnx import TensorProto, helper, numpy_helper

    anchors = anchor_count(size) if anchors is None else anchors
    w = numpy_helper.from_array(np.full((outputs, channels, 1, 1), 0.01, np.float32), "w")
    consts = [
        numpy_helper.from_array(np.array(v, np.int64), n)
        for v, n in (([0, outputs, -1], "shape"), ([0], "starts"), ([anchors], "ends"), ([2], "axes"))
    ]
    last = "sliced" if transpose else "output0"
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["conv"]),
        helper.make_node("Reshape", ["conv", "shape"], ["flat"]),
        helper.make_node("Slice", ["flat", "starts", "ends", "axes"], [last]),
    ]
    if transpose:
        nodes.append(helper.make_node("Transpose", ["sliced"], ["output0"], perm=[0, 2, 1]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)],
        initializer=[w, *consts],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # old enough for any supported onnxruntime
    if external is not None:
        from onnx.external_data_helper import set_external_data

        target = Path(external) if Path(external).is_absolute() else path.parent / external
        target.parent.mkdir(parents=True, exist_ok=True)
        stored = model.graph.initializer[0]  # make_graph copied ``w``: edit the graph's own proto
        target.write_bytes(stored.raw_data)
        set_external_data(stored, location=external)
        stored.ClearField("raw_data")
        stored.data_location = TensorProto.EXTERNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())  # onnx.save would rewrite the external data itself
    return path


ONNX_BACKENDS = ["onnxruntime", "onnxruntime-int8"]


class TestExternalData:
    @pytest.mark.parametrize("name", ONNX_BACKENDS)
    @pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin"])
    def test_relative_path_leaving_the_folder_is_refused(
        self, tmp_path: Path, name: str, location: str
    ) -> None:
        """External data at ``../secret.bin`` (which exists) is refused before the runtime reads it."""
        path = _tiny_onnx(tmp_path / "model" / "model.onnx", external=location)
        assert (tmp_path / "secret.bin").is_file()
        with pytest.raises(ModelFileError) as exc:
            create(name).load(path)
        _assert_refused(exc.value, path, "outside", "secret.bin")

    @pytest.mark.parametrize("inside", [False, True], ids=["outside-folder", "inside-folder"])
    def test_absolute_path_is_refused(self, tmp_path: Path, inside: bool) -> None:
        """An absolute external-data location is refused wherever it points."""
        target = tmp_path / "model" / "w.bin" if inside else tmp_path / "secret.bin"
        path = _tiny_onnx(tmp_path / "model" / "model.onnx", external=str(target))
        with pytest.raises(ModelFileError) as exc:
            create("onnxruntime").load(path)
        _assert_refused(exc.value, path, "outside")

    def test_symlink_out_of_the_folder_is_refused(self, tmp_path: Path) -> None:
        """A relative location that is a symlink to a file outside the folder is refused too."""
        path = _tiny_onnx(tmp_path / "model" / "model.onnx", external="w.bin")
        secret = tmp_path / "secret.bin"
        (tmp_path / "model" / "w.bin").rename(secret)
        (tmp_path / "model" / "w.bin").symlink_to(secret)
        with pytest.raises(ModelFileError) as exc:
            create("onnxruntime").load(path)
        _assert_refused(exc.value, path, "outside")

    def test_missing_external_file_is_named(self, tmp_path: Path) -> None:
        """A model whose external data file is gone says which file is missing."""
        path = _tiny_onnx(tmp_path / "model.onnx", external="weights.bin")
        (tmp_path / "weights.bin").unlink()
        with pytest.raises(ModelFileError) as exc:
            create("onnxruntime").load(path)
        _assert_refused(exc.value, path, "weights.bin", "missing")

    @pytest.mark.parametrize("location", ["weights.bin", "data/weights.bin"])
    def test_external_data_inside_the_folder_loads(self, tmp_path: Path, location: str) -> None:
        """The legitimate case: external data next to (or below) the model loads and runs."""
        path = _tiny_onnx(tmp_path / "model.onnx", external=location)
        backend = create("onnxruntime")
        backend.load(path)
        out = backend.run(np.ones((2, 3, 128, 128), np.float32))
        assert out.shape == (2, 14, anchor_count(128))
        np.testing.assert_allclose(out, 0.03, rtol=1e-5)  # three channels of ones times 0.01


# -- artifacts that load but do not fit the baseline ---------------------------------------------------


def _bench(baseline: Path, model_info, tmp_path: Path, name: str, path: Path) -> Workbench:
    return Workbench(
        weights=baseline,
        imgsz=model_info.imgsz,
        names=model_info.names,
        overrides={name: path},
        cache=ArtifactCache(tmp_path / "cache"),
    )


@pytest.fixture(scope="module")
def three_class_onnx(tmp_path_factory: pytest.TempPathFactory, model_info) -> Path:
    """A real YOLOv8n detector with 3 classes (untrained), exported by detbench's own ONNX path."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from detbench.runtimes.export import ExportSettings, build_onnx

    out = tmp_path_factory.mktemp("three-class")
    weights = out / "nc3.pt"
    torch.save(
        {
            "model": DetectionModel("yolov8n.yaml", nc=3, verbose=False),
            "train_args": {"imgsz": model_info.imgsz},
        },
        weights,
    )
    build_onnx(weights, out / "nc3.onnx", ExportSettings(imgsz=model_info.imgsz))
    return out / "nc3.onnx"


class TestDoesNotFit:
    def test_wrong_class_count_from_a_real_export(
        self, baseline: Path, model_info, tmp_path: Path, three_class_onnx: Path
    ) -> None:
        """A 3-class YOLOv8 export is refused for a 10-class baseline, saying so."""
        bench = _bench(baseline, model_info, tmp_path, "onnxruntime", three_class_onnx)
        with pytest.raises(ModelFileError) as exc:
            bench.load("onnxruntime")
        _assert_refused(exc.value, three_class_onnx, "3 classes", f"has {len(model_info.names)}")

    # (kwargs for _tiny_onnx given the baseline's size, message fragment); outputs default to 4 + classes
    MISFITS: ClassVar[dict] = {
        "input-size": (lambda s: {"size": s + 32}, "input size 3x{big}x{big}"),
        "grayscale": (lambda s: {"channels": 1}, "input size 1x"),
        "classes": (lambda s: {"outputs": 4 + 3}, "3 classes"),
        "anchors": (lambda s: {"anchors": anchor_count(s) - 16}, "layout"),
        "transposed-head": (lambda s: {"transpose": True}, "expected (N, {outputs}, {anchors})"),
    }

    @pytest.mark.parametrize("misfit", MISFITS)
    def test_misfit_is_refused_with_what_differs(
        self, baseline: Path, model_info, tmp_path: Path, misfit: str
    ) -> None:
        """Input size, channels, class count and head layout are each named when they differ."""
        make, fragment = self.MISFITS[misfit]
        s = model_info.imgsz
        outputs = 4 + len(model_info.names)
        path = _tiny_onnx(tmp_path / f"{misfit}.onnx", **{"size": s, "outputs": outputs, **make(s)})
        bench = _bench(baseline, model_info, tmp_path, "onnxruntime", path)
        with pytest.raises(ModelFileError) as exc:
            bench.load("onnxruntime")
        _assert_refused(
            exc.value, path, fragment.format(big=s + 32, outputs=outputs, anchors=anchor_count(s))
        )

    def test_fitting_artifact_is_accepted(self, baseline: Path, model_info, tmp_path: Path) -> None:
        """Control: the same hand-made graph with the baseline's size and classes passes check_fits."""
        path = _tiny_onnx(tmp_path / "fits.onnx", size=model_info.imgsz, outputs=4 + len(model_info.names))
        backend = _bench(baseline, model_info, tmp_path, "onnxruntime", path).load("onnxruntime")
        assert backend.spec.height == model_info.imgsz

    @pytest.mark.parametrize(
        ("shape", "fragment"),
        [(["N", 3, 128], "rank 3"), (["N", 3, "H", "W"], "static channels, height and width")],
    )
    def test_unusable_input_shape_is_refused_at_load(
        self, tmp_path: Path, shape: list, fragment: str
    ) -> None:
        """An input that is not NCHW with a static size is refused when the artifact loads."""
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Identity", ["images"], ["output0"])],
            "g",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = tmp_path / "odd.onnx"
        onnx.save(model, str(path))
        with pytest.raises(ModelFileError) as exc:
            create("onnxruntime").load(path)
        _assert_refused(exc.value, path, fragment)


# -- tensors the artifact cannot take (test_backends covers rank, dtype, NaN/Inf per backend) ---------


def _fixed_batch_ir(onnx_path: Path, out: Path) -> Path:
    import openvino as ov

    out.mkdir()
    ov.save_model(ov.convert_model(str(onnx_path)), str(out / "model.xml"), compress_to_fp16=False)
    return out


FIXED_BATCH_LOADERS = [pytest.param(name, id=name) for name in ONNX_BACKENDS] + [
    pytest.param("openvino", id="openvino", marks=needs_openvino)
]


@pytest.mark.parametrize("name", FIXED_BATCH_LOADERS)
@pytest.mark.parametrize("batch", [1, 3])
def test_batch_other_than_a_fixed_batch_is_refused(tmp_path: Path, name: str, batch: int) -> None:
    """An artifact with a fixed batch of 2 refuses batch 1 and 3 by name; batch 2 runs."""
    path = _tiny_onnx(tmp_path / "fixed.onnx", batch=2)
    if name == "openvino":
        path = _fixed_batch_ir(path, tmp_path / "ir")
    backend = create(name)
    backend.load(path)
    assert backend.spec.batch == 2
    assert not backend.dynamic_batch
    with pytest.raises(BackendError, match=rf"{name}: .*fixed batch of 2; got batch {batch}"):
        backend.run(np.zeros((batch, 3, 128, 128), np.float32))
    assert backend.run(np.zeros((2, 3, 128, 128), np.float32)).shape == (2, 14, anchor_count(128))


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory: pytest.TempPathFactory):
    backend = create("onnxruntime")
    backend.load(_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))
    return backend


GAP_TENSORS = {
    "one-nan-pixel": lambda: np.where(
        np.arange(3 * 128 * 128).reshape(1, 3, 128, 128) == 777, np.nan, 0.5
    ).astype(np.float32),
    "minus-inf": lambda: np.full((1, 3, 128, 128), -np.inf, np.float32),
    "float16": lambda: np.zeros((1, 3, 128, 128), np.float16),
    "rank5": lambda: np.zeros((1, 1, 3, 128, 128), np.float32),
    "torch-tensor": lambda: __import__("torch").zeros(1, 3, 128, 128),
    "list": lambda: [[[[0.0] * 128] * 128] * 3],
}


@pytest.mark.parametrize("make", GAP_TENSORS.values(), ids=GAP_TENSORS.keys())
def test_other_bad_inputs_are_refused(tiny_backend, make) -> None:
    """A single NaN, -Inf, float16, rank 5, or a non-numpy input: BackendError, never a runtime crash."""
    with pytest.raises(BackendError, match="onnxruntime"):
        tiny_backend.run(make())


def test_run_before_load_is_refused() -> None:
    """Running a backend that has no artifact yet is a BackendError, not an AttributeError."""
    with pytest.raises(BackendError, match="before load"):
        create("onnxruntime").run(np.zeros((1, 3, 128, 128), np.float32))


def test_missing_file_is_named() -> None:
    """A path that does not exist is refused with 'file not found' and the path."""
    missing = Path("/nonexistent/detbench/model.onnx")
    with pytest.raises(ModelFileError) as exc:
        create("onnxruntime").load(missing)
    _assert_refused(exc.value, missing, "not found")
