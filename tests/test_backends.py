"""The backend protocol: every backend loads, runs batches, refuses bad tensors, and our pipeline
matches ultralytics' own predict()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detbench.data.images import load_image
from detbench.data.synth import make_scene
from detbench.errors import BackendError
from detbench.model.checkpoint import anchor_count
from detbench.runtimes.backends import REGISTRY, Backend, BaseBackend
from detbench.runtimes.postprocess import Detections, postprocess
from detbench.runtimes.preprocess import preprocess
from detbench.verify.compare import TOLERANCES, assert_detections_match

ASSETS = Path(__import__("ultralytics").__file__).parent / "assets"


def test_registry_lists_every_backend() -> None:
    """The five backends of the study and the tuned configurations are registered by name, each
    declaring the precision it computes in."""
    assert list(REGISTRY) == [
        "pytorch",
        "torchscript",
        "onnxruntime",
        "openvino",
        "onnxruntime-int8",
        "openvino-bf16",
        "openvino-int8",
        "torchscript-frozen",
        "pytorch-compile",
        "onnxruntime-end2end",
    ]
    assert {n: c.precision for n, c in REGISTRY.items() if c.precision != "fp32"} == {
        "onnxruntime-int8": "int8",
        "openvino-bf16": "bf16",
        "openvino-int8": "int8",
    }


def test_bf16_backend_is_skipped_where_the_cpu_lacks_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without avx512_bf16/amx_bf16 in /proc/cpuinfo, openvino-bf16 gets a skip mark naming the
    flags and refuses to load; with either flag it is offered (where openvino is installed)."""
    from detbench import cpuinfo
    from detbench.plugin import fixtures
    from detbench.runtimes.backends import OpenVINOBf16Backend

    def params_with(flags: str) -> dict:
        monkeypatch.setattr(cpuinfo, "read_cpuinfo", lambda *_: {"flags": flags})
        return {p.values[0]: [m for m in p.marks if m.name == "skip"] for p in fixtures.backend_params()}

    skips = params_with("avx2 avx512f avx512_vnni")["openvino-bf16"]
    assert skips and "avx512_bf16" in skips[0].kwargs["reason"]
    with pytest.raises(BackendError, match="avx512_bf16"):
        OpenVINOBf16Backend()._load(Path("unused.xml"))
    for flags in ("avx2 avx512_bf16", "avx2 amx_bf16"):
        assert params_with(flags)["openvino-bf16"] == params_with(flags)["openvino"]


def test_backend_satisfies_protocol(backend: BaseBackend) -> None:
    """Each backend is a Backend: name, load, run, describe (with explicit thread count)."""
    assert isinstance(backend, Backend)
    info = backend.describe()
    assert info["backend"] == backend.name and info["threads"] >= 1


@pytest.mark.parametrize("batch", [1, 4])
def test_backend_runs_batches(backend: BaseBackend, model_info, batch: int) -> None:
    """Batch 1 always; batch 4 where the artifact is dynamic, else a clear BackendError."""
    x, _ = preprocess([make_scene(1, "val", i, 128)[0] for i in range(batch)], model_info.imgsz)
    if backend.spec.batch not in (None, batch):
        with pytest.raises(BackendError, match="fixed batch"):
            backend.run(x)
        return
    out = backend.run(x)
    anchors = anchor_count(model_info.imgsz)
    assert out.shape == (batch, 4 + len(model_info.names), anchors) and out.dtype == np.float32


BAD_TENSORS = {
    "rank3": lambda s: np.zeros((3, s, s), np.float32),
    "float64": lambda s: np.zeros((1, 3, s, s), np.float64),
    "uint8": lambda s: np.zeros((1, 3, s, s), np.uint8),
    "nan": lambda s: np.full((1, 3, s, s), np.nan, np.float32),
    "inf": lambda s: np.full((1, 3, s, s), np.inf, np.float32),
    "wrong-size": lambda s: np.zeros((1, 3, s + 32, s), np.float32),
    "nhwc": lambda s: np.zeros((1, s, s, 3), np.float32),
    "empty-batch": lambda s: np.zeros((0, 3, s, s), np.float32),
}


@pytest.mark.parametrize("make", BAD_TENSORS.values(), ids=BAD_TENSORS.keys())
def test_bad_tensor_is_refused_with_a_typed_error(backend: BaseBackend, model_info, make) -> None:
    """Wrong rank, dtype, size, layout or non-finite values raise BackendError naming the backend."""
    with pytest.raises(BackendError, match=backend.name):
        backend.run(make(model_info.imgsz))


def test_fixed_batch_artifact_says_so(workbench, tmp_path: Path) -> None:
    """An ONNX model exported without a dynamic batch refuses batch 2 with a clear message."""
    import dataclasses

    from detbench.runtimes.backends import create
    from detbench.runtimes.cache import ArtifactCache
    from detbench.runtimes.export import Exporter

    exp = Exporter(
        workbench.weights,
        dataclasses.replace(workbench.exporter.settings, dynamic_batch=False),
        cache=ArtifactCache(tmp_path),
    )
    b = create("onnxruntime")
    b.load(exp.get("onnx").path)
    x = np.zeros((2, 3, workbench.imgsz, workbench.imgsz), np.float32)
    with pytest.raises(BackendError, match="fixed batch of 1"):
        b.run(x)
    assert b.run(x[:1]).shape[0] == 1


def _ultralytics_predict(weights: Path, rgb: np.ndarray, imgsz: int, names, conf: float) -> Detections:
    from ultralytics import YOLO

    # Same decoded pixels for both sides (BGR for ultralytics); rect=False: square letterbox like ours.
    r = YOLO(str(weights)).predict(
        source=np.ascontiguousarray(rgb[..., ::-1]),
        imgsz=imgsz,
        rect=False,
        conf=conf,
        iou=0.7,
        device="cpu",
        verbose=False,
    )[0]
    b = r.boxes
    return Detections(b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(np.int64), tuple(names))


# The baseline knows garments, not buses: at conf 0.25 it finds 1 box on bus.jpg and none on zidane.jpg,
# at 0.1 it finds 12 and 4 (measured), so the photos are compared at 0.1 and both sides have boxes.
PHOTO_CONF, SCENE_CONF = 0.1, 0.25


def _images() -> list:
    real = [pytest.param(ASSETS / n, id=n) for n in ("bus.jpg", "zidane.jpg")]
    return real + [pytest.param(("scene", i), id=f"scene{i}") for i in range(4)]


@pytest.mark.parametrize("source", _images())
def test_pipeline_matches_ultralytics_predict(
    reference: BaseBackend, baseline: Path, model_info, source
) -> None:
    """Our preprocessing + eager PyTorch + postprocessing = YOLO(weights).predict(): same count,
    classes, IoU >= 0.99, scores within 1e-3."""
    photo = isinstance(source, Path)
    image = load_image(source) if photo else make_scene(11, "val", source[1], 160)[0]
    conf = PHOTO_CONF if photo else SCENE_CONF
    rgb = np.asarray(image)
    x, infos = preprocess([rgb], model_info.imgsz)
    ours = postprocess(reference.run(x), infos, model_info.names, conf=conf)[0]
    theirs = _ultralytics_predict(baseline, rgb, model_info.imgsz, model_info.names, conf)
    assert len(theirs) >= 1, (
        f"ultralytics finds nothing on {source} at conf {conf}: the parity checks nothing"
    )
    assert len(ours) == len(theirs)
    assert_detections_match([theirs], [ours], TOLERANCES["torchscript"], label=str(source))


COMPILE_TWICE = """
import logging, sys
import numpy as np
from detbench.paths import configure_environment
configure_environment()
from detbench.runtimes import backends
messages = []
handler = logging.Handler()
handler.emit = lambda record: messages.append(record.getMessage())
logging.getLogger("torch._dynamo").addHandler(handler)
if sys.argv[1] != "ours":
    backends.RECOMPILE_LIMIT = int(sys.argv[1])
# Dynamo decides which frames compile and counts them against the limit whatever the backend (the
# same frames, graphs and limit hits as under inductor): its eager backend skips only the codegen.
import torch
compile_with = torch.compile
torch.compile = lambda model, **kw: compile_with(model, **{**kw, "backend": "eager"})
x = np.zeros((1, 3, int(sys.argv[3]), int(sys.argv[3])), np.float32)
for threads in (1, 2):
    backend = backends.create("pytorch-compile", backends.BackendSettings(threads=threads))
    backend.load(sys.argv[2])
    backend.run(x)
print(sum("recompile_limit" in m for m in messages))
"""


@pytest.mark.slow
@pytest.mark.parametrize("limit", ["ours", "8"], ids=["ours", "dynamo-default"])
def test_compiled_model_stays_compiled_across_thread_counts(baseline: Path, model_info, limit: str) -> None:
    """pytorch-compile at a second thread count compiles again instead of dropping ultralytics' C2f
    frames to eager at dynamo's recompile limit; at dynamo's default limit (8) they do drop, which
    is what made tune time pytorch-compile at eager's latency. Each in a fresh process: dynamo's
    caches and its per-frame counts are process-wide. The graphs go to dynamo's eager backend, not
    inductor: the limit and the frames it counts are dynamo's, and inductor's codegen only made this
    test slow."""
    from _support.processes import spawn_python
    from detbench.paths import cache_root
    from detbench.runtimes.backends import PyTorchCompileBackend

    if PyTorchCompileBackend.unavailable():
        pytest.skip(PyTorchCompileBackend.unavailable())
    proc = spawn_python(cache_root(), COMPILE_TWICE, limit, baseline, model_info.imgsz)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    fell_back = int(out.strip().splitlines()[-1])
    assert (fell_back > 0) == (limit != "ours"), err[-2000:]


def test_nms_runs_on_torchvisions_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """ultralytics picks torchvision's NMS only when torchvision is imported; ours imports it."""
    import sys

    from detbench.runtimes.postprocess import ultralytics_nms

    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    ultralytics_nms()
    assert "torchvision" in sys.modules


@pytest.mark.parametrize("seed", range(5))
def test_torchvision_nms_keeps_what_ultralytics_python_nms_keeps(seed: int) -> None:
    """The kernel swap changes speed only: on crowded random boxes both keep the same boxes."""
    import torch
    import torchvision
    from ultralytics.utils.nms import TorchNMS

    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(2000, 2, generator=gen) * 120
    wh = torch.rand(2000, 2, generator=gen) * 40 + 2
    boxes, scores = torch.cat([xy, xy + wh], 1), torch.rand(2000, generator=gen)
    for iou in (0.45, 0.7):
        ours = torchvision.ops.nms(boxes, scores, iou)
        theirs = TorchNMS.nms(boxes, scores, iou)
        assert len(ours) > 10
        assert torch.equal(ours, theirs)
