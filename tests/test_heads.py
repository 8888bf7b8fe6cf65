"""The Detect head is found by structure in every ultralytics family; both INT8 recipes keep it in float."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import pytest
import torch

from detbench.errors import ModelFileError
from detbench.model.checkpoint import load_detection_model
from detbench.runtimes.cache import ArtifactCache
from detbench.runtimes.export import (
    Exporter,
    ExportSettings,
    Int8Recipe,
    NncfRecipe,
    build_onnx_int8,
    build_openvino_int8,
    untrained_checkpoint,
)

# family: (scale, head layer, head class, has DFL, depthwise class branch), as ultralytics 8.4.190
# builds its bundled yaml.
FAMILIES = {
    "yolov8": ("n", 22, "Detect", True, False),
    "yolo11": ("n", 23, "Detect", True, True),
    "yolo12": ("n", 21, "Detect", True, True),
    "yolo26": ("n", 23, "Detect", False, True),  # reg_max 1: no DFL
    "yolov10": ("n", 23, "v10Detect", True, True),
    "yolov5": ("nu", 24, "Detect", True, False),
    "yolov9": ("t", 22, "Detect", True, False),  # v9's smallest scale is t
}
# family: the layers holding a self-attention module (ultralytics Attention / AAttn) at that scale.
ATTENTION_LAYERS = {
    "yolov8": (),
    "yolo11": (10,),  # C2PSA
    "yolo12": (6, 8),  # A2C2f with area attention
    "yolo26": (10, 22),  # C2PSA, and the P5 neck's attention C3k2
    "yolov10": (10,),  # PSA
    "yolov5": (),
    "yolov9": (),
}
IMGSZ = 64  # small: the head's structure and node names do not depend on the input size
NAMES = ("a", "b", "c")
# Two calibration images and MinMax: which nodes stay float does not depend on the calibration.
SETTINGS = ExportSettings(
    imgsz=IMGSZ,
    int8=Int8Recipe(calibration_images=2, calib_stride=1, method="MinMax"),
    nncf=NncfRecipe(calibration_images=2),
)
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _exporter(family: str, calib: list[Path]) -> Exporter:
    weights = untrained_checkpoint(FAMILIES[family][0], IMGSZ, NAMES, family=family)
    return Exporter(weights, SETTINGS, calib_images=calib)


# YOLOv9's graph is the largest (660 nodes at t scale): its exports take ~50 s of the module's time.
@pytest.fixture(
    scope="module", params=[pytest.param(f, marks=pytest.mark.slow) if f == "yolov9" else f for f in FAMILIES]
)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def exporter(family: str, dataset) -> Exporter:
    return _exporter(family, dataset.images("train")[:2])


def test_the_head_is_found_by_structure(family: str, exporter: Exporter) -> None:
    """The head is the layer whose module is a Detect (or subclass), wherever the family puts it."""
    _scale, index, kind, dfl, depthwise_cls = FAMILIES[family]
    head = exporter.head
    assert (head.index, head.kind, head.dfl, head.depthwise_cls) == (index, kind, dfl, depthwise_cls)
    assert head.prefix == f"/model.{index}/"


def test_the_head_prefix_names_the_exported_head(family: str, exporter: Exporter) -> None:
    """The prefix names the exported head's nodes, its DFL's where it has one, and the node that
    writes the output: the decoding the INT8 recipes keep in float is inside it."""
    import onnx

    head = exporter.head
    nodes = onnx.load(str(exporter.get("onnx").path)).graph.node
    assert sum(head.prefix in n.name for n in nodes) >= 60, "the head's convs, DFL and decoding"
    assert any(head.prefix in n.name and n.op_type == "Sigmoid" and "/act/" not in n.name for n in nodes)
    assert any("/dfl/" in n.name for n in nodes) is head.dfl
    if head.dfl:
        assert any(head.dfl_prefix in n.name and n.op_type == "Softmax" for n in nodes)
    writer = next(n for n in nodes if "output0" in n.output)
    assert head.prefix in writer.name, writer.name


def test_onnx_int8_keeps_the_head_in_float(family: str, exporter: Exporter) -> None:
    """ORT INT8 quantizes the backbone and no node of the head: no Q/DQ/QLinear node on its
    activations (``/model.23/...``) or its weights (``model.model.23....weight``)."""
    import onnx

    index = FAMILIES[family][1]  # the table's, not head.prefix: a wrong prefix must not hide itself
    nodes = onnx.load(str(exporter.get("onnx-int8").path)).graph.node
    prefix, dotted = f"/model.{index}/", f".model.{index}."

    def quantized(n: onnx.NodeProto) -> bool:
        return n.op_type in QDQ_OPS or n.op_type.startswith("QLinear")

    assert sum(quantized(n) for n in nodes) > 100, "the backbone is quantized"
    inside = [n.name for n in nodes if quantized(n) and (prefix in n.name or dotted in n.name)]
    assert not inside, f"{len(inside)} quantization nodes in the head, e.g. {inside[:3]}"


def test_the_stem_is_found_by_stride(family: str, exporter: Exporter) -> None:
    """The stem is the leading layers whose output is at stride 4 or finer: at n scale in every
    family a stride-2 conv, a stride-2 conv and the first block (C2f, C3k2, C3, ELAN1, ...)."""
    assert exporter.stem == ("/model.0/", "/model.1/", "/model.2/")


def test_onnx_int8_keeps_the_stem_in_float_where_there_is_attention(family: str, exporter: Exporter) -> None:
    """Where the model has attention layers, ORT INT8 keeps the stem's conv (``/model.0/``) in fp32:
    neither its input nor its weight comes from a DequantizeLinear; YOLOv8's and YOLOv5u's stay
    quantized (their recipes are unchanged)."""
    import onnx

    nodes = onnx.load(str(exporter.get("onnx-int8").path)).graph.node
    dequantized = {out for n in nodes if n.op_type == "DequantizeLinear" for out in n.output}
    stem = [n for n in nodes if n.op_type == "Conv" and "/model.0/" in n.name]
    assert len(stem) == 1, [n.name for n in stem]
    fed = [i for i in stem[0].input[:2] if i in dequantized]
    assert (not fed) if ATTENTION_LAYERS[family] else len(fed) == 2, fed


def test_attention_layers_are_found_by_structure(family: str, exporter: Exporter) -> None:
    """The attention layers are those holding an Attention / AAttn module, and their prefix names the
    exported attention's activation MatMuls and Softmax; NNCF keeps them in float and takes MINMAX
    activation ranges only where there is one: YOLOv8 has none, so its recipes keep their literals
    (test_the_v8n_baseline_keeps_its_recipes_and_cache_keys)."""
    import onnx

    expected = ATTENTION_LAYERS[family]
    assert exporter.attention == tuple(f"/model.{i}/" for i in expected)
    # NNCF's MINMAX activation ranges for a model with attention only (YOLOv8n's artifact unchanged).
    nncf = exporter.settings_for("openvino-int8").nncf
    stem = r".*/model\.0/.*"  # the stem stays in float where there is attention
    assert (stem in nncf.ignored_patterns) == bool(expected), nncf.ignored_patterns
    assert nncf.attention_ranges == ("MINMAX" if expected else None)
    # ... and int8 weight-only compression of those layers (YOLOv8n's recipe unchanged).
    assert nncf.attention_weights == ("INT8_SYM" if expected else None)
    nodes = onnx.load(str(exporter.get("onnx").path)).graph.node
    for prefix in exporter.attention:
        ops = {n.op_type for n in nodes if prefix in n.name}
        assert {"MatMul", "Softmax"} <= ops, (prefix, sorted(ops))
    outside = [
        n.name for n in nodes if n.op_type == "MatMul" and not any(p in n.name for p in exporter.attention)
    ]
    assert not outside, f"attention outside the layers found: {outside[:3]}"


@pytest.mark.openvino
@pytest.mark.parametrize("family", ["yolov8", "yolo11", "yolo26"])
def test_openvino_int8_ignored_scope_validates(family: str, dataset) -> None:
    """NNCF's ignored scope (strictly validated: every pattern must match) fits each head: YOLOv8's
    model.22, YOLO11's model.23 and YOLO26's head without DFL. A depthwise class branch (YOLO11,
    YOLO26) stays in float whole: no FakeQuantize feeds any of its convs; YOLOv8's full-conv class
    branch and every box branch stay quantized, as before. Each attention layer (YOLO11, YOLO26)
    keeps float activations (no FakeQuantize feeds a conv or MatMul in it) and int8 weights (each conv's
    weight is an int8 Constant, decompressed on load), but for a conv reading one output of a
    multi-output node, which OpenVINO's CPU plugin cannot compile so (runtimes/export._compress_only)."""
    import openvino as ov

    exp = _exporter(family, dataset.images("train")[:2])
    xml = exp.get("openvino-int8").path / "model.xml"
    index, depthwise_cls = FAMILIES[family][1], FAMILIES[family][4]
    fed = {
        op.get_friendly_name(): op.input_value(0).get_node().get_type_name() == "FakeQuantize"
        for op in ov.Core().read_model(str(xml)).get_ops()
        if op.get_type_name() in ("Convolution", "GroupConvolution")
        and f"/model.{index}/" in op.get_friendly_name()
    }
    cls = [quantized for name, quantized in fed.items() if f"/model.{index}/cv3." in name]
    box = [quantized for name, quantized in fed.items() if f"/model.{index}/cv2." in name]
    assert len(cls) >= 9 and len(box) == 9, sorted(fed)
    assert all(box), "the box branch's convs are quantized"
    assert not any(cls) if depthwise_cls else all(cls), f"{sum(cls)} of {len(cls)} class convs quantized"
    model = ov.Core().read_model(str(xml))
    (stem,) = [
        op for op in model.get_ops()
        if op.get_type_name() == "Convolution" and "/model.0/" in op.get_friendly_name()
    ]  # fmt: skip
    stem_quantized = stem.input_value(0).get_node().get_type_name() == "FakeQuantize"
    assert stem_quantized != bool(ATTENTION_LAYERS[family]), "the stem stays float where there is attention"
    for i in ATTENTION_LAYERS[family]:
        inside = [
            op for op in model.get_ops()
            if f"/model.{i}/" in op.get_friendly_name() and op.get_type_name() in ("Convolution", "MatMul")
        ]  # fmt: skip
        fed = [op.get_friendly_name() for op in inside if any(
            v.get_node().get_type_name() == "FakeQuantize" for v in op.input_values()
        )]  # fmt: skip
        assert inside and not fed, f"layer {i}: {len(fed)} of {len(inside)} convs/MatMuls quantized"
        convs = [
            op for op in inside
            if op.get_type_name() == "Convolution" and op.input_value(0).get_node().get_output_size() == 1
        ]  # fmt: skip
        floats = [op.get_friendly_name() for op in convs if not _int8_weight(op)]
        assert convs and not floats, f"layer {i}: {len(floats)} of {len(convs)} conv weights not int8"


def _int8_weight(op) -> bool:
    """Whether ``op``'s weight is an int8 Constant behind its decompression (Convert, Subtract, Multiply)."""
    node = op.input_value(1).get_node()
    while node.get_type_name() in ("Multiply", "Subtract", "Convert", "Reshape"):
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant" and node.get_element_type().get_type_name() in ("i8", "u8")


def test_the_v8n_baseline_keeps_its_recipes_and_cache_keys(baseline: Path, tmp_path: Path) -> None:
    """For the committed YOLOv8n the head-derived recipes are today's literals, so every INT8 cache
    key (and the goldens and budgets of those artifacts) is unchanged."""
    exp = Exporter(baseline, cache=ArtifactCache(tmp_path))
    literal = dataclasses.replace(
        exp.settings,
        int8=dataclasses.replace(exp.settings.int8, keep_fp32=("/model.22/",)),
        nncf=dataclasses.replace(
            exp.settings.nncf,
            ignored_patterns=(
                r".*/model\.22/dfl/.*",
                r".*/model\.22/(Sub|Add|Mul|Div|Concat|Sigmoid)[^/]*",
            ),
            attention_ranges=None,  # no attention layer: NNCF's default ranges, as before
            attention_weights=None,  # ... and no weight-only compression
        ),
    )
    before = Exporter(baseline, literal, cache=exp.cache)
    assert exp.settings_for("onnx-int8").int8 == literal.int8
    assert exp.settings_for("openvino-int8").nncf == literal.nncf
    for fmt in ("onnx-int8", "openvino-int8"):
        assert exp.cache.key(fmt, exp.fields(fmt)) == exp.cache.key(fmt, before.fields(fmt))


@pytest.mark.openvino
def test_a_prefix_matching_no_node_is_refused_in_one_line(dataset, tmp_path: Path) -> None:
    """A recipe whose head prefix names no node of the exported graph fails with one line naming
    the graph and the prefix (for NNCF: before NNCF's multi-line ValidationError)."""
    exp = _exporter("yolov8", dataset.images("train")[:2])
    images = dataset.images("train")[:2]
    ort = exp.settings_for("onnx-int8")
    ort = dataclasses.replace(ort, int8=dataclasses.replace(ort.int8, keep_fp32=("/model.99/",)))
    with pytest.raises(ModelFileError, match=r"model\.onnx: no node .* '/model\.99/'") as err:
        build_onnx_int8(exp.get("onnx").path, tmp_path / "q.onnx", ort, images)
    assert "\n" not in str(err.value)
    ov = exp.settings_for("openvino-int8")
    ov = dataclasses.replace(
        ov, nncf=dataclasses.replace(ov.nncf, ignored_patterns=(r".*/model\.99/dfl/.*",))
    )
    with pytest.raises(ModelFileError, match=r"model_openvino_model: no node .*99") as err:
        build_openvino_int8(exp.get("openvino").path, tmp_path / "q_openvino_model", ov, images)
    assert "\n" not in str(err.value)


def _headless(path: Path, kind: str) -> None:
    """A checkpoint, saved as ultralytics saves one, of a model with no Detect head."""
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, SegmentationModel

    if kind == "detect-without-head":
        model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
        model.model[-1] = torch.nn.Identity()
    elif kind == "classify":
        model = ClassificationModel("yolov8n-cls.yaml", nc=3, verbose=False)
    elif kind == "segment":
        model = SegmentationModel("yolov8n-seg.yaml", nc=3, verbose=False)
    else:
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    torch.save({"model": model.half(), "train_args": {"imgsz": IMGSZ}}, path)


@pytest.mark.parametrize(
    ("kind", "missing"),
    [
        ("detect-without-head", "no Detect head among its 23 layers (the last is Identity)"),
        ("classify", "no Detect head among its 10 layers (the last is Classify)"),
        ("segment", "its head (layer 22) is Segment, not a Detect head"),
        ("plain-torch", "Sequential has no layer list"),
    ],
)
def test_a_model_without_a_detect_head_is_refused_in_one_line(
    kind: str, missing: str, tmp_path: Path
) -> None:
    """Loading refuses it with one line naming the file and what is missing, as a ModelFileError."""
    path = tmp_path / f"{kind}.pt"
    _headless(path, kind)
    with pytest.raises(ModelFileError) as err:
        load_detection_model(path)
    assert str(err.value).startswith(f"{path}: {missing}"), str(err.value)
    assert "\n" not in str(err.value)


def test_the_cli_refuses_a_headless_model_in_one_line(tmp_path: Path) -> None:
    """``detbench export --format onnx-int8`` on it: exit 1, one line naming the file, no internal error."""
    from detbench import cli

    path = tmp_path / "headless.pt"
    _headless(path, "detect-without-head")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["export", "--weights", str(path), "--format", "onnx-int8"])
    lines = (out.getvalue() + err.getvalue()).strip().splitlines()
    assert code == 1
    assert lines == [
        f"detbench: error: {path}: no Detect head among its 23 layers (the last is Identity); "
        "detbench needs an ultralytics detection model"
    ], lines
