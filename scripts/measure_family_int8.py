"""Measure what each INT8 recipe keeps in float in a family's Detect head, and how far each moves the
raw head, the detections and mAP from eager PyTorch, for the family matrix's cached models.

    nice -n 19 python scripts/measure_family_int8.py                        # yolo11n, yolo12n, yolo26n
    python scripts/measure_family_int8.py --families yolo11n --variants current,cls-dw-float
    python scripts/measure_family_int8.py --weights yolov8n=path/to/best.pt  # any other weights

Per family (its cached ``$DETBENCH_CACHE/families/<family>-<key>/best.pt``; never trained here):

- structure: the head's convolutions (box branch ``cv2``, class branch ``cv3``; depthwise where a
  GroupConvolution) and which of them each INT8 artifact quantizes: ORT's QDQ graph (a conv fed by a
  DequantizeLinear) and NNCF's IR (a conv fed by a FakeQuantize);
- deviation from eager PyTorch, each artifact in batches of 8: the raw head on the first
  ``--val-images`` val images and on ``--drawn`` images built as the suite's Hypothesis strategies
  build them (any mode, content and size; seeds 0..N-1), the score group's max abs and where (with
  the reference's value there), the box group's max abs on live anchors; detections at the
  confidence threshold on the val images matched as the INT8 rows match them (IoU >= det_iou): the
  largest matched score difference, and the unmatched count; mAP50 / mAP50-95 on the whole val split.

``--variants`` names NNCF recipes beside the ``onnxruntime-int8`` and ``openvino-int8`` artifacts the
exporter builds (``current``): each is built from the family's fp32 IR into a temporary folder with
patterns added to the recipe's ignored scope, or another activation range estimator (see
``VARIANTS``). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from detbench.data.datasets import load_dataset
from detbench.data.images import load_image
from detbench.model.baseline import synthetic_dataset
from detbench.model.checkpoint import load_detection_model
from detbench.model.families import FAMILIES, FamilySettings, family_dir
from detbench.paths import configure_environment
from detbench.runtimes.backends import (
    BackendSettings,
    OnnxRuntimeInt8Backend,
    OpenVINOInt8Backend,
    PyTorchBackend,
)
from detbench.runtimes.export import build_openvino_int8
from detbench.runtimes.postprocess import CONF, postprocess
from detbench.runtimes.preprocess import preprocess
from detbench.runtimes.workbench import Workbench
from detbench.testing.strategies import CONTENTS, MODES, _build
from detbench.verify.accuracy import evaluate
from detbench.verify.compare import TOLERANCES, deviation, match_detections

# NNCF ignored-scope patterns added to the recipe per variant; {p}: the head's escaped prefix.
VARIANTS: dict[str, tuple[str, ...]] = {
    "current": (),
    "head-float": (r".*{p}.*",),  # what ORT's keep_fp32 does: every node of the head
    "cls-float": (r".*{p}cv3\..*",),  # the whole class branch
    "cls-dw-float": (r".*{p}cv3\.\d+/cv3\.\d+\.\d+/cv3\.\d+\.\d+\.0/.*",),  # its depthwise convs only
    "cls-pw-float": (r".*{p}cv3\.\d+/cv3\.\d+\.\d+/cv3\.\d+\.\d+\.1/.*",),  # the 1x1 convs after them
    "cls-last-float": (r".*{p}cv3\.\d+/cv3\.\d+\.2/.*",),  # its last 1x1 conv (the logits)
    "layers-0-10-float": (r".*/model\.([0-9]|10)/.*",),  # YOLO11n's backbone (layers 0-10)
    "range-minmax": (),  # the recipe as is, activation ranges by NNCF's MINMAX estimator
}
# Variants that also set NNCF's activation range estimator (its default for MIXED is another).
RANGE_MINMAX = {"range-minmax"}


@contextlib.contextmanager
def _activation_ranges_minmax(on: bool) -> Iterator[None]:
    """nncf.quantize with activation ranges from each tensor's min and max over the calibration set."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if not on:
        yield
        return
    params = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
    )
    quantize = nncf.quantize
    nncf.quantize = functools.partial(quantize, advanced_parameters=params)
    try:
        yield
    finally:
        nncf.quantize = quantize


def _weights(spec: list[str], families: list[str]) -> dict[str, Path]:
    out = {}
    for fam in families:
        path = family_dir(FamilySettings(family=fam)) / "best.pt"
        if not path.is_file():
            raise SystemExit(f"{fam}: no cached weights at {path} (this script never trains)")
        out[fam] = path
    for item in spec:
        name, _, path = item.partition("=")
        out[name] = Path(path)
    return out


def drawn_batch(n: int, imgsz: int) -> tuple[np.ndarray, list]:
    """``n`` images as the suite's strategies build them (seeded: the same images every run)."""
    rng = np.random.default_rng(0)
    imgs = []
    for seed in range(n):
        mode = MODES[rng.integers(len(MODES))]
        kind = CONTENTS[rng.integers(len(CONTENTS))]
        w, h = (int(v) for v in rng.integers(16, 513, 2))
        imgs.append(_build(mode, kind, w, h, seed))
    return preprocess(imgs, imgsz)


def _conv_inputs(ops: list, head: str) -> dict[str, dict]:
    """Each head convolution of an OpenVINO model: its kind and whether a FakeQuantize feeds it."""
    convs = {}
    for op in ops:
        name = op.get_friendly_name()
        if head not in name or op.get_type_name() not in ("Convolution", "GroupConvolution"):
            continue
        src = op.input_value(0).get_node()
        convs[name] = {
            "depthwise": op.get_type_name() == "GroupConvolution",
            "quantized": src.get_type_name() == "FakeQuantize",
        }
    return convs


def nncf_structure(ir_dir: Path, head: str) -> dict:
    import openvino as ov

    convs = _conv_inputs(ov.Core().read_model(str(ir_dir / "model.xml")).get_ops(), head)
    return _summary(convs)


def ort_structure(onnx_path: Path, head: str) -> dict:
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    convs = {}
    for n in graph.node:
        if n.op_type != "Conv" or head not in n.name:
            continue
        src = producer.get(n.input[0])
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        convs[n.name] = {
            "depthwise": group > 1,
            "quantized": src is not None and src.op_type == "DequantizeLinear",
        }
    return _summary(convs)


def _summary(convs: dict[str, dict]) -> dict:
    def branch(name: str) -> str:
        return "cls" if "/cv3." in name else "box" if "/cv2." in name else "other"

    out: dict = {"convs": len(convs), "quantized": sum(c["quantized"] for c in convs.values())}
    for b in ("box", "cls"):
        mine = {k: v for k, v in convs.items() if branch(k) == b}
        out[b] = {
            "convs": len(mine),
            "quantized": sum(v["quantized"] for v in mine.values()),
            "depthwise": sum(v["depthwise"] for v in mine.values()),
            "depthwise_quantized": sum(v["depthwise"] and v["quantized"] for v in mine.values()),
        }
    out["quantized_names"] = sorted(
        re.sub(r"^.*?/model\.\d+/", "", k) for k, v in convs.items() if v["quantized"]
    )
    return out


def raw_stats(ref: np.ndarray, out: np.ndarray) -> dict:
    dev = deviation(ref, out)
    diff = np.abs(out[:, 4:].astype(np.float64) - ref[:, 4:])
    n, c, a = np.unravel_index(int(np.argmax(diff)), diff.shape)
    live = ref[:, 4:].max(axis=1) >= CONF
    box = np.abs(out[:, :4].astype(np.float64) - ref[:, :4])
    return {
        "score_max_abs": dev.score_max_abs,
        "score_worst": {"image": int(n), "ref": float(ref[n, 4 + c, a]), "out": float(out[n, 4 + c, a])},
        "score_p999": float(np.percentile(diff, 99.9)),
        "box_max_abs_live_px": float(np.where(live[:, None, :], box, 0.0).max(initial=0.0)),
    }


def det_stats(ref_raw: np.ndarray, raw: np.ndarray, infos: list, names: tuple, det_iou: float) -> dict:
    ref, out = postprocess(ref_raw, infos, names), postprocess(raw, infos, names)
    diffs, worst, unmatched, total = [], None, 0, 0
    for i, (r, o) in enumerate(zip(ref, out)):
        m = match_detections(r, o, iou=det_iou)
        for ri, oi, _iou, ds in m.pairs:
            diffs.append(ds)
            if worst is None or ds > worst["diff"]:
                worst = {"image": i, "ref": float(r.scores[ri]), "out": float(o.scores[oi]), "diff": ds}
        unmatched += len(m.unmatched_ref) + len(m.unmatched_out)
        total += len(r) + len(o)
    return {
        "matched": len(diffs),
        "score_diff_max": float(max(diffs, default=0.0)),
        "score_diff_p99": float(np.percentile(diffs, 99)) if diffs else 0.0,
        "worst": worst,
        "unmatched": unmatched,
        "detections": total,
    }


@dataclasses.dataclass(frozen=True)
class Probe:
    """One model's inputs and eager PyTorch's raw heads on them, measured against every artifact."""

    x_val: np.ndarray
    infos: list
    ref_val: np.ndarray
    x_drawn: np.ndarray
    ref_drawn: np.ndarray
    names: tuple[str, ...]
    imgsz: int
    dataset: object
    with_map: bool

    def measure(self, backend, row: str, structure: dict) -> dict:
        out_val, out_drawn = backend.run_batched(self.x_val, 8), backend.run_batched(self.x_drawn, 8)
        det_iou = TOLERANCES[row].det_iou
        entry = {
            "structure": structure,
            "raw_val": raw_stats(self.ref_val, out_val),
            "raw_drawn": raw_stats(self.ref_drawn, out_drawn),
            "detections_val": det_stats(self.ref_val, out_val, self.infos, self.names, det_iou),
        }
        if self.with_map:
            entry["map"] = _map(backend, self.dataset, self.imgsz)
        return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--weights", action="append", default=[], help="NAME=PATH, measured besides")
    ap.add_argument("--variants", default="current,head-float,cls-float,cls-dw-float")
    ap.add_argument("--val-images", type=int, default=50)
    ap.add_argument("--drawn", type=int, default=64)
    ap.add_argument("--skip-map", action="store_true")
    args = ap.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    variants = [v for v in args.variants.split(",") if v]
    settings = BackendSettings(threads=1)
    doc: dict = {"val_images": args.val_images, "drawn": args.drawn, "families": {}}
    for name, weights in _weights(args.weights, families).items():
        bench = Workbench.from_options(weights, threads=1)
        info = load_detection_model(weights)[1]
        head = info.head
        ds = load_dataset(synthetic_dataset())  # what Workbench calibrates with, and trained them
        x_val, infos = preprocess([load_image(p) for p in ds.images("val")[: args.val_images]], info.imgsz)
        x_drawn, _ = drawn_batch(args.drawn, info.imgsz)
        eager = PyTorchBackend(settings)
        eager.load(weights)
        probe = Probe(
            x_val, infos, eager.run_batched(x_val, 8), x_drawn, eager.run_batched(x_drawn, 8),
            info.names, info.imgsz, ds, not args.skip_map,
        )  # fmt: skip
        fam: dict = {"weights": str(weights), "head": dataclasses.asdict(head), "artifacts": {}}
        if not args.skip_map:
            fam["eager_map"] = _map(eager, ds, info.imgsz)
        doc["families"][name] = fam

        def record(label: str, entry: dict, fam: dict = fam, name: str = name) -> None:
            fam["artifacts"][label] = entry
            shown = {k: v for k, v in entry.items() if k != "structure"}
            print(f"{name} {label}: {json.dumps(shown)}", flush=True)

        ort = OnnxRuntimeInt8Backend(settings)
        art = bench.exporter.get("onnx-int8").path
        ort.load(art)
        record("onnxruntime-int8", probe.measure(ort, "onnxruntime-int8", ort_structure(art, head.prefix)))
        ir = bench.exporter.get("openvino").path
        base = bench.exporter.settings_for("openvino-int8")
        with tempfile.TemporaryDirectory() as tmp:
            for variant in variants:
                if variant == "current":
                    path = bench.exporter.get("openvino-int8").path
                else:
                    extra = tuple(p.format(p=re.escape(head.prefix)) for p in VARIANTS[variant])
                    nncf = dataclasses.replace(base.nncf, ignored_patterns=base.nncf.ignored_patterns + extra)
                    path = Path(tmp) / f"{variant}_openvino_model"
                    try:
                        with _activation_ranges_minmax(variant in RANGE_MINMAX):
                            build_openvino_int8(
                                ir, path, dataclasses.replace(base, nncf=nncf), bench.exporter.calib_images
                            )
                    except Exception as exc:  # a pattern this head has no node for
                        record(f"openvino-int8:{variant}", {"error": str(exc)[:300]})
                        continue
                ov = OpenVINOInt8Backend(settings)
                ov.load(path)
                structure = nncf_structure(path, head.prefix)
                record(f"openvino-int8:{variant}", probe.measure(ov, "openvino-int8", structure))
    print(json.dumps(doc, indent=2))
    return 0


def _map(backend, ds, imgsz: int) -> dict:
    acc = evaluate(backend, ds, imgsz=imgsz)
    return {"mAP50": acc.mAP50, "mAP50_95": acc.mAP50_95}


if __name__ == "__main__":
    configure_environment()
    raise SystemExit(main())
