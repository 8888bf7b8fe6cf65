"""detbench tune's recommended configuration against ultralytics' own ``benchmark()``, side by side.

    flock /tmp/detbench-cpu.lock python scripts/vs_ultralytics.py --tune-json /tmp/tune-full/tune.json
    flock /tmp/detbench-cpu.lock python scripts/vs_ultralytics.py --scale m      # YOLOv8m vs eager

Part 1 (default): in this one process, ``ultralytics.utils.benchmarks.benchmark(model, data,
imgsz=128, device="cpu")`` at its defaults and with ``int8=True``, one format per call, restricted to
the formats that run offline here (PyTorch, TorchScript, ONNX, OpenVINO at defaults; ONNX and
OpenVINO with int8, the two that quantize; every other format would pip-install a toolchain), then
the recommended configuration from tune.json timed two ways:

- ``p50``: detbench's steady state (blocks of consecutive batch-1 calls on one image), what the
  issue's target is stated on;
- ``val loop``: like ultralytics' "Inference time (ms/im)": the mean over the val images of the
  inference call alone, each image preprocessed and NMS-ed in between (caches partly cold).

Prints the ratios best-ultralytics-ms / detbench-ms. With ``--rounds K`` (default 3) the two best
ultralytics formats (default and int8) are benchmarked again K-1 times, alternating with re-timings
of ours (ours first in odd rounds, last in even ones), and each ratio is taken within a round: on a
shared VM whose speed drifts by tens of percent within minutes, a ratio of two timings made minutes
apart measures the drift; the median of per-round ratios, with its range, does not.

Part 3 (``--e2e``): the whole per-image pipeline, file to detections, both ways on the same images:
``YOLO(export).predict(path, stream=True, verbose=False)`` with ultralytics' own ONNX (and OpenVINO,
when installed) export of the weights, made offline into a temp dir, against detbench's pipeline
(``runtimes.pipeline.stage_calls``: the ``--decode`` variant, the reference letterbox and NMS) on the
equivalent backend loading the same file (onnxruntime; openvino or openvino-bf16 as ultralytics'
compiled precision). Both warm (one untimed pass first, torchvision imported, the same threads), then
``--rounds`` rounds, each a pass over the images per contender (an untimed settle first), the order
reversed every other round; wall clock per image, ultralytics' own ``speed`` dict and detbench's stage
split beside. The detections of both sides are matched and the agreement printed. Last line:
``e2e: ultralytics X ms/image, detbench Y ms/image, ratio R [lo, hi]``: each side's fastest backend
(median over all timed images), R = ultralytics / detbench from the per-round medians' paired ratio
and its paired bootstrap 95% interval (``perf.stats.paired_ratio_ci``).

    nice -n 19 python scripts/vs_ultralytics.py --e2e --images photos --rounds 3
    nice -n 19 python scripts/vs_ultralytics.py --e2e --tune-json tune/tune.json

With ``--tune-json``, detbench's side is that tune.json's recommended pipeline instead (its variants,
backend, artifact and threads, as ``detbench.load_pipeline`` builds it: ``--decode`` is refused), one
contender against every ultralytics export, its detections matched against each: the issue's figure,
the recommended pipeline against ``YOLO(export).predict``. The peer's exports are then each format at
its default and with ``int8=True`` (calibrated on ``--data``, default the synthetic dataset), so an
INT8 recommendation meets the peer's own INT8 at the same precision, and the last line takes the
fastest of them.

Part 2 (``--scale m``): ``detbench tune``'s search, latency only, on an untrained YOLOv8m at 128 px,
and the recommended configuration's speedup over eager PyTorch at 1 thread, both from that one
steady-state run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import math
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detbench.paths import configure_environment

DEFAULT_FORMATS = ("-", "torchscript", "onnx", "openvino")
INT8_FORMATS = ("onnx", "openvino")
SPEED_COL = "Inference time (ms/im)"
DEFAULT_TUNE_JSON = Path("tune/tune.json")  # detbench tune's default --out
# Eager PyTorch's compiled twins: they add compile time (torch.compile ~40 s per configuration) and
# are no contender for the fastest (>= 2.8x onnxruntime's p50 on v8n, README "Tuned configurations");
# pass --backends to include them.
SCALE_SKIPPED = ("torchscript-frozen", "pytorch-compile")


def ultralytics_rows(weights: Path, data: Path, imgsz: int, formats, **kwargs) -> list[dict]:
    """One ``benchmark(format=...)`` call per format, in a scratch folder (ultralytics writes its
    exports beside the weights and appends to ./benchmarks.log)."""
    from ultralytics.utils.benchmarks import benchmark

    rows = []
    for fmt in formats:
        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
            local = Path(tmp) / weights.name
            shutil.copy2(weights, local)
            t0 = time.perf_counter()
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                df = benchmark(
                    model=str(local), data=str(data), imgsz=imgsz, device="cpu", format=fmt, **kwargs
                )
            wall = time.perf_counter() - t0
        for rec in df.to_dicts():
            speed = rec.get(SPEED_COL)
            ms = float(speed) if speed not in (None, "-", "") else None
            metric = next((v for k, v in rec.items() if "mAP50-95" in k), None)
            rows.append(
                {
                    "format": rec["Format"],
                    "arg": fmt,  # benchmark()'s format argument, to run this format again
                    "ms_per_image": ms,
                    "mAP50-95": None if metric in (None, "-") else float(metric),
                    "size_mb": rec.get("Size (MB)"),
                    "wall_s": wall,
                    **kwargs,
                }
            )
    return rows


def time_recommended(rec: dict, data: Path, imgsz: int, val_images: int | None) -> dict:
    """The recommended configuration, loaded from its artifact, timed steady-state and val-loop style."""
    from detbench.data.datasets import load_dataset
    from detbench.data.images import load_image
    from detbench.perf.timing import BlockPlan
    from detbench.runtimes.backends import BackendSettings, PyTorchBackend, create
    from detbench.runtimes.postprocess import nms
    from detbench.runtimes.preprocess import preprocess
    from detbench.tune.search import _call

    backend = create(rec["backend"], BackendSettings(threads=rec["threads"]))
    backend.load(Path(rec["artifact"]))
    if isinstance(backend, PyTorchBackend):
        backend.set_imgsz(imgsz)
    images = load_dataset(data).images("val")[:val_images]
    x0 = preprocess([images[0]], imgsz)[0]
    (sec,) = BlockPlan.DEFAULT.steady_state([_call(backend, x0)])
    per_image = []
    for path in images:  # ultralytics' val loop: decode + letterbox, infer (timed), NMS, per image
        x = preprocess([load_image(path)], imgsz)[0]
        t = time.perf_counter()
        raw = backend.run(x)
        per_image.append(time.perf_counter() - t)
        nms(raw, conf=0.001, iou=0.7)
    return {
        "p50_ms": float(np.median(sec) * 1e3),
        "val_loop_mean_ms": float(np.mean(per_image) * 1e3),
        "images": len(images),
    }


def _best(rows: list[dict]) -> dict | None:
    ok = [r for r in rows if r["ms_per_image"] is not None]
    return min(ok, key=lambda r: r["ms_per_image"]) if ok else None


def _round_ratios(b_def: dict | None, b_int8: dict | None, ours: dict) -> dict:
    """One round's ratios: each best ultralytics format's ms/im over our two timings of the same round."""
    out = {}
    for name, b in (("default", b_def), ("int8", b_int8)):
        if b is not None:
            out[name] = {
                "best_format": b["format"],
                "best_ms": b["ms_per_image"],
                "vs_p50": b["ms_per_image"] / ours["p50_ms"],
                "vs_val_loop": b["ms_per_image"] / ours["val_loop_mean_ms"],
            }
    return out


def part_ultralytics(args: argparse.Namespace) -> dict:
    from detbench.model.baseline import resolve_weights, synthetic_dataset

    weights = resolve_weights(args.weights)
    data = Path(args.data or synthetic_dataset())
    doc = json.loads(Path(args.tune_json or DEFAULT_TUNE_JSON).read_text())
    rec = doc["recommended"]
    logging.getLogger("ultralytics").setLevel(logging.ERROR)
    default = ultralytics_rows(weights, data, args.imgsz, DEFAULT_FORMATS)
    int8 = ultralytics_rows(weights, data, args.imgsz, INT8_FORMATS, int8=True)
    ours = time_recommended(rec, data, args.imgsz, None)
    b_def, b_int8 = _best(default), _best(int8)
    rounds = [{"detbench": ours, "ratios": _round_ratios(b_def, b_int8, ours)}]
    for k in range(1, args.rounds):
        if k % 2:  # ours first, then theirs; the next round the other way round
            ours_k = time_recommended(rec, data, args.imgsz, None)
        d_k = ultralytics_rows(weights, data, args.imgsz, [b_def["arg"]]) if b_def else []
        i_k = ultralytics_rows(weights, data, args.imgsz, [b_int8["arg"]], int8=True) if b_int8 else []
        if not k % 2:
            ours_k = time_recommended(rec, data, args.imgsz, None)
        rounds.append({"detbench": ours_k, "ratios": _round_ratios(_best(d_k), _best(i_k), ours_k)})

    print(f"\nultralytics benchmark(), imgsz={args.imgsz}, device=cpu, data={data}")
    print(f"{'run':<10}{'format':<14}{'ms/im':>8}{'mAP50-95':>10}{'size MB':>9}{'wall s':>8}")
    for run, rows in (("default", default), ("int8=True", int8)):
        for r in rows:
            ms = "-" if r["ms_per_image"] is None else f"{r['ms_per_image']:.2f}"
            m = "-" if r["mAP50-95"] is None else f"{r['mAP50-95']:.4f}"
            print(f"{run:<10}{r['format']:<14}{ms:>8}{m:>10}{r['size_mb']!s:>9}{r['wall_s']:>8.0f}")
    print(
        f"\ndetbench recommended: {rec['label']} ({rec['precision']}), mAP50-95 {rec['mAP50-95']}, "
        f"tune.json p50 {rec['p50_ms']:.3f} ms"
    )
    for k, r in enumerate(rounds, 1):
        o = r["detbench"]
        line = (
            f"round {k}: detbench p50 {o['p50_ms']:.3f} ms, val-loop mean {o['val_loop_mean_ms']:.3f} ms/im"
        )
        for name, q in r["ratios"].items():
            line += f"; ultralytics {name} {q['best_format']} {q['best_ms']:.2f} ms/im = {q['vs_p50']:.2f}x"
        print(line)
    summary = {}
    for name in ("default", "int8"):
        per_round = [r["ratios"][name] for r in rounds if name in r["ratios"]]
        if not per_round:
            print(f"no ultralytics {name} format produced a time")
            continue
        summary[name] = {"best_format": per_round[0]["best_format"], "rounds": len(per_round)}
        for key in ("vs_p50", "vs_val_loop"):
            values = [q[key] for q in per_round]
            summary[name][key] = {"median": float(np.median(values)), "min": min(values), "max": max(values)}
        m = summary[name]
        print(
            f"ultralytics {name} best ({m['best_format']}) / detbench, median of {m['rounds']} rounds: "
            f"{m['vs_p50']['median']:.2f}x p50 [{m['vs_p50']['min']:.2f}, {m['vs_p50']['max']:.2f}], "
            f"{m['vs_val_loop']['median']:.2f}x val-loop mean "
            f"[{m['vs_val_loop']['min']:.2f}, {m['vs_val_loop']['max']:.2f}]"
        )
    return {"default": default, "int8": int8, "rounds": rounds, "recommended": rec, "ratios": summary}


def part_scale(args: argparse.Namespace) -> dict:
    from detbench import CLASS_NAMES
    from detbench.perf.machine import usable_cpus
    from detbench.runtimes.export import untrained_checkpoint
    from detbench.tune.search import TuneSettings, run_search
    from detbench.tune.space import configuration_space, thread_counts

    weights = untrained_checkpoint(args.scale, args.imgsz, CLASS_NAMES)
    points = configuration_space(args.backends, thread_counts(usable_cpus()), static_batch=False)
    s = TuneSettings(
        weights=weights, data=args.data, imgsz=args.imgsz, points=tuple(points), accuracy=False, cold="none"
    )
    result = run_search(s)
    cands = result.doc["candidates"]
    eager = next(c for c in cands if c["backend"] == "pytorch" and c["threads"] == 1)
    rec = result.doc["recommended"]
    print(f"\nyolov8{args.scale} (untrained) at {args.imgsz} px, latency only, one steady-state run:")
    for c in sorted(cands, key=lambda c: c["p50_ms"] or float("inf")):
        p50 = "-" if c["p50_ms"] is None else f"{c['p50_ms']:.2f}"
        print(f"  {c['label']:<26}{p50:>8} ms  {'' if c['verified'] else c['reason'][:90]}")
    ratio = eager["p50_ms"] / rec["p50_ms"]
    print(f"recommended {rec['label']} {rec['p50_ms']:.2f} ms = {ratio:.2f}x eager PyTorch 1 thread")
    return {"candidates": cands, "recommended": rec, "speedup_vs_eager_1t": ratio}


E2E_VAL_IMAGES = 40  # the first val images, as the issue measured
E2E_FORMATS = ("onnx", "openvino")
# Same file, same runtime, same pixels: detections agree up to kernel order; the bound is loose so a
# real pipeline difference (letterbox, NMS, box mapping) shows, not rounding.
E2E_LOOSE = dict(box_atol=math.inf, score_atol=math.inf, rtol=math.inf, map_drop=0.0, class_map_drop=0.0)


def e2e_images(kind: str, data: Path | None) -> list[Path]:
    """``photos``: the photo-sized set plus ultralytics' bus.jpg and zidane.jpg; ``val``: the first
    E2E_VAL_IMAGES val images of ``data`` (default: the synthetic dataset)."""
    from detbench.data.datasets import load_dataset
    from detbench.data.photos import photo_dataset, ultralytics_photos
    from detbench.model.baseline import synthetic_dataset

    if kind == "photos":
        return [*load_dataset(photo_dataset()).images("val"), *ultralytics_photos()]
    return load_dataset(data or synthetic_dataset()).images("val")[:E2E_VAL_IMAGES]


@dataclass(frozen=True)
class PeerExport:
    """One of ultralytics' own exports of the weights: its format, whether ``int8=True``, its path."""

    fmt: str
    int8: bool
    path: Path


def ultralytics_exports(
    weights: Path, imgsz: int, tmp: Path, int8_data: Path | None = None
) -> list[PeerExport]:
    """``YOLO(weights).export(format=...)`` for E2E_FORMATS that run here, in ``tmp`` (offline); with
    ``int8_data`` (a data.yaml to calibrate on) also each with ``int8=True`` (ultralytics quantizes
    ONNX with ONNX Runtime and OpenVINO with NNCF), so an INT8 pipeline meets the peer's INT8 too."""
    from detbench.runtimes import export as exporter

    out = []
    for fmt in E2E_FORMATS:
        if fmt == "openvino" and not exporter.openvino_available():
            continue
        for int8 in (False, True) if int8_data is not None else (False,):
            kw = {"int8": True, "data": str(int8_data)} if int8 else {}
            folder = tmp / f"{fmt}-int8" if int8 else tmp / fmt
            with contextlib.redirect_stdout(io.StringIO()):
                path = exporter.export_ultralytics(weights, folder, fmt, imgsz, **kw)
            out.append(PeerExport(fmt, int8, path))
    return out


def peer_backend(export: PeerExport, imgsz: int) -> str:
    """The detbench backend that runs ``export`` as ultralytics' AutoBackend does (OpenVINO: the
    precision its CPU plugin compiles to for ultralytics' config)."""
    if export.fmt != "openvino":
        return "onnxruntime-int8" if export.int8 else "onnxruntime"
    if export.int8:
        return "openvino-int8"
    return "openvino-bf16" if _ov_precision(imgsz, export.path) == "bf16" else "openvino"


@dataclass
class Contender:
    """One side on one backend: ``call(path) -> Detections``, timed per image."""

    side: str  # "ultralytics" or "detbench"
    backend: str
    call: Callable[[Path], Any]
    rounds: list[np.ndarray] = field(default_factory=list)  # seconds per image, one array per round
    split: list[dict[str, float]] = field(default_factory=list)  # per image: ms per stage

    @property
    def label(self) -> str:
        return f"{self.side} {self.backend}"


def ultralytics_contender(fmt: str, export: Path, imgsz: int, names: tuple[str, ...]) -> Contender:
    from ultralytics import YOLO

    from detbench.runtimes.postprocess import Detections

    model = YOLO(str(export), task="detect")
    c = Contender("ultralytics", fmt, lambda p: None)

    def call(path: Path) -> Detections:
        (res,) = list(model.predict(str(path), stream=True, verbose=False, imgsz=imgsz, device="cpu"))
        c.split.append(dict(res.speed))
        b = res.boxes
        return Detections(
            b.xyxy.numpy().astype(np.float32),
            b.conf.numpy().astype(np.float32),
            b.cls.numpy().astype(np.int64),
            names,
        )

    c.call = call
    return c


def detbench_contender(
    backend_name: str, export: Path, imgsz: int, names: tuple[str, ...], decoder: str, threads: int
) -> Contender:
    """detbench's pipeline (the ``decoder`` variant, the reference letterbox and NMS) on
    ``backend_name`` loading ``export``."""
    from detbench.runtimes.backends import BackendSettings, create
    from detbench.runtimes.pipeline import stage_calls

    backend = create(backend_name, BackendSettings(threads=threads))
    backend.load(export)
    return pipeline_contender(backend_name, backend.run, stage_calls(imgsz, names, decode=decoder))


def recommended_contender(spec: Any) -> Contender:
    """tune.json's recommended pipeline (a ``runtimes.pipeline.Pipeline``) on its own backend
    configuration, as ``detbench.load_pipeline`` builds it."""
    return pipeline_contender(f"recommended {spec.config.backend}", spec.config.load().run, spec.calls())


def pipeline_contender(backend: str, run: Callable[[Any], Any], pipeline: Any) -> Contender:
    """A ``runtimes.pipeline.StageCalls`` around ``run``, each call's stage split kept."""
    from detbench.perf.pipeline_timing import STAGES, time_image

    c = Contender("detbench", backend, lambda p: None)

    def call(path: Path) -> Any:
        ns, det = time_image(pipeline, run, path)
        c.split.append(dict(zip(STAGES, (ns / 1e6).tolist())))
        return det

    c.call = call
    return c


def time_pass(c: Contender, images: list[Path], settle_s: float) -> np.ndarray:
    """One block: an untimed settle on the first image, then each image timed by the wall clock."""
    from detbench.perf.timing import settle

    settle(lambda: c.call(images[0]), 1, settle_s)
    c.split.clear()  # the split is kept for the timed images only
    out = np.empty(len(images))
    for i, path in enumerate(images):
        t = time.perf_counter()
        c.call(path)
        out[i] = time.perf_counter() - t
    return out


def e2e_rounds(contenders: list[Contender], images: list[Path], rounds: int, settle_s: float) -> None:
    """``rounds`` rounds of one pass per contender, in ``timing.block_schedule`` order (A B C D D C B A
    ...), each pass's times appended to its contender."""
    from detbench.perf.timing import block_schedule

    for i in block_schedule(len(contenders), rounds):
        contenders[i].rounds.append(time_pass(contenders[i], images, settle_s))


@dataclass(frozen=True)
class E2ESummary:
    ultralytics: str  # the fastest ultralytics contender's label
    detbench: str
    ultralytics_ms: float  # median over every timed image
    detbench_ms: float
    ratio: float  # ultralytics / detbench, paired by round
    low: float
    high: float
    round_ratios: tuple[float, ...]

    def line(self) -> str:
        return (
            f"e2e: ultralytics {self.ultralytics_ms:.2f} ms/image, detbench {self.detbench_ms:.2f} ms/image, "
            f"ratio {self.ratio:.2f} [{self.low:.2f}, {self.high:.2f}]"
        )


def e2e_summary(contenders: list[Contender]) -> E2ESummary:
    """Each side's fastest contender (median over all its timed images) and the paired ratio of their
    per-round medians (``perf.stats.paired_ratio_ci``: ultralytics / detbench, BCa 95%)."""
    from detbench.perf.stats import paired_ratio_ci

    def med(c: Contender) -> float:
        return float(np.median(np.concatenate(c.rounds)))

    best = {
        side: min((c for c in contenders if c.side == side), key=med) for side in ("ultralytics", "detbench")
    }
    u, d = best["ultralytics"], best["detbench"]
    u_r = np.array([np.median(r) for r in u.rounds])
    d_r = np.array([np.median(r) for r in d.rounds])
    ratio, low, high = paired_ratio_ci(d_r, u_r, name="e2e")
    return E2ESummary(
        u.label, d.label, med(u) * 1e3, med(d) * 1e3, ratio, low, high, tuple((u_r / d_r).tolist())
    )


def agreement(ref: list[Any], out: list[Any], decoder: str) -> tuple[bool, str]:
    """Do detbench's detections (``out``) agree with ultralytics' (``ref``) on the same images? The
    loose bound for a decoder that claims identical pixels, the decoder's measured row otherwise."""
    from detbench.verify.compare import OutputMismatch, Tolerance, assert_detections_match, match_detections
    from detbench.verify.decode import DECODE_TOLERANCES

    tol = DECODE_TOLERANCES.get(decoder) or Tolerance(
        **E2E_LOOSE,
        det_iou=0.9,
        det_score=0.01,
        det_unmatched_frac=0.02,
        reason="same file, runtime and pixels: only a pipeline difference moves a box",
    )
    pairs = [match_detections(r, o, iou=tol.det_iou) for r, o in zip(ref, out)]
    ious = [p[2] for m in pairs for p in m.pairs]
    dscore = [p[3] for m in pairs for p in m.pairs]
    text = (
        f"{sum(map(len, ref))} ultralytics / {sum(map(len, out))} detbench detections on {len(ref)} images, "
        f"{len(ious)} matched (same class, IoU >= {tol.det_iou:g}"
        + (f"; min IoU {min(ious):.3f}, max |score diff| {max(dscore):.3g}" if ious else "")
        + f"), {sum(len(m.unmatched_ref) + len(m.unmatched_out) for m in pairs)} unmatched"
    )
    try:
        assert_detections_match(ref, out, tol)
    except OutputMismatch as exc:
        return False, f"{text}: DIFFER beyond the bound ({str(exc).splitlines()[-1].strip()})"
    return True, f"{text}: agree within IoU >= {tol.det_iou:g}, score diff <= {tol.det_score:g}"


def part_e2e(args: argparse.Namespace) -> dict:
    import torch

    from detbench.runtimes.postprocess import ultralytics_nms

    ultralytics_nms()  # imports torchvision, so YOLO().predict's NMS runs its C++ kernel as ours does

    from detbench.model.baseline import resolve_weights, synthetic_dataset
    from detbench.model.checkpoint import load_detection_model
    from detbench.perf.timing import SETTLE_S

    weights = resolve_weights(args.weights)
    names = tuple(load_detection_model(weights)[1].names)
    images = e2e_images(args.images, args.data)
    threads = args.threads
    torch.set_num_threads(threads)  # ultralytics' letterbox tensors and NMS run in torch
    logging.getLogger("ultralytics").setLevel(logging.ERROR)
    # The recommended pipeline may be INT8: the peer's best then includes its own INT8 exports (same
    # precision), calibrated on the same data.
    int8_data = (args.data or synthetic_dataset()) if args.recommended is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        exports = ultralytics_exports(weights, args.imgsz, Path(tmp), int8_data)
        contenders: list[Contender] = []
        rec = None
        if args.recommended is not None:  # one detbench contender: the recommended pipeline
            rec = recommended_contender(args.recommended)
            rec_out = [rec.call(p) for p in images]  # warm-up pass, untimed; compared below
            contenders.append(rec)
            print(f"detbench: tune.json's recommended {args.recommended.label} on {rec.backend}")
        for export in exports:
            u = ultralytics_contender(export.fmt, export.path, args.imgsz, names)
            ref = [u.call(p) for p in images]  # warm-up pass, untimed; its detections are compared
            u.backend = backend = peer_backend(export, args.imgsz)
            contenders.append(u)
            if rec is not None:
                ok, text = agreement(ref, rec_out, args.decode)
                print(f"detections, ultralytics {backend} vs detbench {rec.backend}: {text}")
            else:
                d = detbench_contender(backend, export.path, args.imgsz, names, args.decode, threads)
                out = [d.call(p) for p in images]
                ok, text = agreement(ref, out, args.decode)
                d.backend = backend
                contenders.append(d)
                print(f"detections, {backend}: {text}")
            if not ok:
                args.disagree = True
        e2e_rounds(contenders, images, args.rounds, SETTLE_S)
    print(
        f"\n{len(images)} {args.images} images, imgsz {args.imgsz}, {threads} thread(s) (torch, detbench; "
        f"ultralytics' runtimes at their defaults: ORT's physical cores, OpenVINO's LATENCY hint), "
        f"decode {args.decode}, {args.rounds} rounds"
    )
    for c in contenders:
        per_round = ", ".join(f"{np.median(r) * 1e3:.2f}" for r in c.rounds)
        split = ", ".join(f"{k} {np.median([s[k] for s in c.split]):.2f}" for k in c.split[0])
        own = "ultralytics speed dict" if c.side == "ultralytics" else "detbench stages"
        print(
            f"{c.label:<28} {np.median(np.concatenate(c.rounds)) * 1e3:7.2f} ms/image "
            f"(rounds: {per_round}); {own} (last round, ms): {split}"
        )
    summary = e2e_summary(contenders)
    print(
        f"per-round ratios {summary.ultralytics} / {summary.detbench}: "
        + ", ".join(f"{r:.3f}" for r in summary.round_ratios)
    )
    print(summary.line())
    return {
        "images": [str(p) for p in images],
        "contenders": {c.label: [r.tolist() for r in c.rounds] for c in contenders},
        "summary": dataclasses.asdict(summary),
    }


def _ov_precision(imgsz: int, export: Path) -> str:
    """The inference precision OpenVINO's CPU plugin picks for ultralytics' config (its LATENCY hint,
    no precision hint): bf16 where the CPU has it, else f32."""
    import openvino as ov

    compiled = ov.Core().compile_model(
        str(next(export.glob("*.xml"))), "CPU", {"PERFORMANCE_HINT": "LATENCY"}
    )
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def main(argv: list[str] | None = None) -> int:
    configure_environment()
    from detbench.perf.machine import usable_cpus
    from detbench.runtimes.backends import REGISTRY
    from detbench.runtimes.decode import DECODERS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, help="checkpoint (default: the committed baseline)")
    p.add_argument("--data", type=Path, help="data.yaml (default: the synthetic dataset)")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument(
        "--tune-json",
        type=Path,
        help=f"detbench tune's output (default {DEFAULT_TUNE_JSON}); with --e2e: detbench's side is its "
        "recommended pipeline (detbench.load_pipeline's) instead of --decode on each export",
    )
    p.add_argument("--rounds", type=int, default=3, help="paired rounds of the two best formats vs ours")
    p.add_argument("--scale", help="instead: latency-only tune of an untrained yolov8<scale> vs eager")
    p.add_argument(
        "--backends",
        type=lambda t: t.split(","),
        default=[n for n in REGISTRY if n not in SCALE_SKIPPED],
        help="with --scale: backends to search (default: every registered one but "
        + ", ".join(SCALE_SKIPPED)
        + ")",
    )
    p.add_argument("--e2e", action="store_true", help="instead: file to detections per image, both ways")
    p.add_argument("--images", choices=("val", "photos"), default="photos", help="with --e2e: which images")
    p.add_argument(
        "--decode", choices=list(DECODERS), help="with --e2e: detbench's decode variant (default pillow)"
    )
    p.add_argument(
        "--threads", type=int, default=usable_cpus(), help="with --e2e: torch's and detbench's threads"
    )
    p.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    args.disagree = False
    args.recommended = None
    if args.e2e and args.tune_json is not None:
        from detbench.errors import DetbenchError
        from detbench.tune.pipelines import pipeline_for_script

        try:
            args.recommended = pipeline_for_script(args.tune_json, args.decode, "--decode")
        except DetbenchError as exc:
            p.error(str(exc))
        if args.recommended.config.imgsz != args.imgsz:
            p.error(f"--imgsz {args.imgsz}: the recommended pipeline runs at {args.recommended.config.imgsz}")
        args.decode = args.recommended.decode
    args.decode = args.decode or "pillow"
    part = part_e2e if args.e2e else part_scale if args.scale else part_ultralytics
    result = part(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 1 if args.disagree else 0


if __name__ == "__main__":
    sys.exit(main())
