"""Throughput (images/s) over a set of image files: detbench's sequential and streaming pipelines
against ``YOLO(ultralytics' own ONNX export).predict(paths, stream=True)``, on the same files.

    nice -n 19 python scripts/measure_throughput.py [--images photos|val] [--rounds 5] [--passes 2]
    nice -n 19 python scripts/measure_throughput.py --tune-json tune/tune.json   # the recommended one

The baseline weights are exported once by ultralytics (``YOLO(weights).export(format="onnx",
imgsz=128)``, in a temp folder), and that one ONNX file runs on both sides in one ONNX Runtime
session (detbench's ``onnxruntime`` backend: ``intra_op_num_threads`` = the cores, inter-op 1,
sequential, all graph optimizations), installed into ultralytics' predictor in place of the session
it made with ORT's defaults: so the two sides differ in their pipelines only.

Cores: each setting (1 core, all usable cores) pins every thread of this process to that many CPUs
(``sched_setaffinity`` on each task) and sets ORT's, torch's and OpenCV's thread counts to it;
detbench's stream uses that many decode workers. Contenders per setting:

- ``ultralytics``: ``predict(paths, stream=True, verbose=False)``, torchvision imported first (its
  C++ NMS), warm;
- ``detbench-seq``: ``ImagePipeline.sequential`` (decode -> preprocess -> run -> postprocess);
- ``detbench-stream``: ``ImagePipeline.stream``, postprocess in the inferring thread;
- ``detbench-stream-post``: the same with postprocess in its own thread;
- ``detbench-parallel`` (2 cores and more): ``runtimes.stream.parallel``, one whole pipeline per core,
  each on its own backend at 1 thread (one ONNX Runtime session each), images taken in turn.

detbench runs the identical variants (``--decoder`` default opencv, lean preprocess, NumPy NMS) on
the same ONNX session or, with ``--tune-json``, the recommended pipeline of that tune.json (its
variants, backend and artifact, ``tune.pipelines.pipeline_from_tune``; threads: the setting's cores;
when its backend is INT8, the peer is ultralytics' own ``int8=True`` OpenVINO export as ultralytics
runs it, calibrated on the synthetic dataset, instead of the shared ONNX session: the same precision),
and the streams are checked to give the sequential pipeline's detections bit for bit before timing;
ultralytics' detections are matched against detbench's (same class, IoU >= 0.5). After one warm pass
each, rounds alternate the contenders' order (forward, then reversed); each contender's timing in a
round is ``--passes`` passes over the images. A ratio is detbench / ultralytics images/s within one
round; printed: per-round ratios, their median and range. Last line, for all cores and the fastest
overlapping mode (stream, stream-post or parallel):
``throughput: ultralytics X img/s, detbench Y img/s, ratio R [lo, hi]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from detbench.paths import configure_environment

PEER = "ultralytics"
MATCH_IOU = 0.5


@dataclass(frozen=True)
class ContenderRun:
    """One contender at one core count: images/s per round (each round ``passes`` passes)."""

    name: str
    images_per_s: list[float]

    @property
    def median(self) -> float:
        return float(np.median(self.images_per_s))


@dataclass(frozen=True)
class Ratio:
    """detbench / ultralytics images/s, round by round (the same round's timings, paired)."""

    contender: str
    per_round: list[float]
    median: float
    lo: float
    hi: float


@dataclass(frozen=True)
class CoresResult:
    cores: int
    cpus: list[int]
    runs: list[ContenderRun]
    ratios: list[Ratio]
    order: list[list[str]] = field(default_factory=list)  # contenders' order in each round


def pin(cpus: Sequence[int]) -> None:
    """Every thread of this process onto ``cpus`` (threads a runtime starts later inherit it)."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


def set_threads(n: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def export_peer(weights: Path, imgsz: int, folder: Path, fmt: str, **kwargs) -> Path:
    """ultralytics' own export of ``weights`` into ``folder`` (``runtimes.export.export_ultralytics``),
    quietly."""
    from detbench.runtimes.export import export_ultralytics

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return export_ultralytics(weights, folder, fmt, imgsz, **kwargs)


def ultralytics_detections(results) -> list:
    from detbench.runtimes.postprocess import Detections

    out = []
    for r in results:
        b = r.boxes
        names = tuple(r.names[i] for i in sorted(r.names))
        out.append(
            Detections(
                b.xyxy.numpy().astype(np.float32),
                b.conf.numpy().astype(np.float32),
                b.cls.numpy().astype(np.int64),
                names,
            )
        )
    return out


def timed(fn: Callable[[], int], passes: int) -> float:
    """Images/s over ``passes`` calls of ``fn`` (each returns how many images it went through)."""
    t0 = time.perf_counter()
    n = sum(fn() for _ in range(passes))
    return n / (time.perf_counter() - t0)


def measure_cores(
    args, cores: int, cpus: list[int], onnx: Path, paths: list[Path], imgsz: int
) -> CoresResult:
    from ultralytics import YOLO

    from detbench.runtimes.backends import BackendSettings, create
    from detbench.runtimes.pipeline import BackendConfig, Pipeline
    from detbench.runtimes.stream import ImagePipeline, parallel, same_results
    from detbench.verify.compare import match_detections

    pin(cpus)
    set_threads(cores)
    backend = create("onnxruntime", BackendSettings(threads=cores))
    backend.load(onnx)
    # An INT8 recommendation meets the peer at the same precision: ultralytics' own INT8 OpenVINO export,
    # run as ultralytics runs it (OpenVINO sees this setting's pinned CPUs).
    peer = YOLO(str(args.peer_int8 or onnx), task="detect")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer_dets = ultralytics_detections(
            peer.predict([str(p) for p in paths], stream=True, verbose=False, imgsz=imgsz)
        )
    if args.peer_int8 is None:  # one session, the same threads, both sides
        peer.predictor.model.backend.session = backend.session
    names = tuple(peer.names[i] for i in sorted(peer.names))
    if args.recommended is None:
        spec = Pipeline(
            BackendConfig("onnxruntime", cores, onnx, imgsz, names), args.decoder, "lean", "numpy"
        )
        pipe = ImagePipeline.from_pipeline(spec, backend)
    else:  # tune.json's pipeline and backend configuration, at this setting's cores
        spec = dataclasses.replace(
            args.recommended, config=dataclasses.replace(args.recommended.config, threads=cores)
        )
        pipe = ImagePipeline.from_pipeline(spec)
        print(f"{cores} core(s): detbench runs tune.json's {spec.label} on {spec.config.backend}")
    depth = 2 * cores + 2

    def stream(post: bool) -> Callable[[], list]:
        return lambda: list(pipe.stream(paths, workers=cores, depth=depth, post_thread=post))

    files = [str(p) for p in paths]
    contenders: dict[str, Callable[[], list]] = {
        PEER: lambda: list(peer.predict(files, stream=True, verbose=False, imgsz=imgsz)),
        "detbench-seq": lambda: list(pipe.sequential(paths)),
        "detbench-stream": stream(False),
        "detbench-stream-post": stream(True),
    }
    if cores > 1:  # one whole pipeline per core, each backend at 1 thread
        one = dataclasses.replace(spec, config=dataclasses.replace(spec.config, threads=1))
        pipes = [ImagePipeline.from_pipeline(one) for _ in range(cores)]
        contenders["detbench-parallel"] = lambda: list(parallel(pipes, paths))
    ref = contenders["detbench-seq"]()
    for name in [n for n in contenders if n.startswith("detbench-") and n != "detbench-seq"]:
        if (diff := same_results(ref, contenders[name]())) is not None:
            raise SystemExit(f"{name} differs from the sequential pipeline: {diff}")
    failed = [r.path.name for r in ref if not r.ok]
    if failed:
        raise SystemExit(f"detbench could not read {failed}")
    matched = sum(len(match_detections(p, r.detections, iou=MATCH_IOU).pairs) for p, r in zip(peer_dets, ref))
    print(
        f"{cores} core(s) {cpus}: detections ultralytics {sum(map(len, peer_dets))}, detbench "
        f"{sum(len(r.detections) for r in ref)}, matched {matched} (same class, IoU >= {MATCH_IOU})"
    )
    speed: dict[str, list[float]] = {name: [] for name in contenders}
    order_log = []
    for r in range(args.rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        order_log.append(order)
        for name in order:
            fn = contenders[name]
            speed[name].append(timed(lambda fn=fn: len(fn()), args.passes))
    runs = [ContenderRun(n, [round(v, 2) for v in s]) for n, s in speed.items()]
    ratios = []
    for name in list(contenders)[1:]:
        per = [a / b for a, b in zip(speed[name], speed[PEER])]
        ratios.append(
            Ratio(
                name,
                [round(v, 3) for v in per],
                round(float(np.median(per)), 3),
                round(min(per), 3),
                round(max(per), 3),
            )
        )
    return CoresResult(cores, cpus, runs, ratios, order_log)


def pipe_label(args) -> str:
    rec = args.recommended
    return f"{rec.label} on {rec.config.backend} ({rec.config.artifact})"


def main(argv: Sequence[str] | None = None) -> None:
    configure_environment()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", choices=("photos", "val"), default="photos")
    ap.add_argument("--limit", type=int, default=100, help="at most this many images (val has 200)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--passes", type=int, default=2, help="passes over the images per timing")
    ap.add_argument("--decoder", help="detbench's decoder (runtimes.decode.DECODERS; default opencv)")
    ap.add_argument(
        "--tune-json",
        type=Path,
        help="detbench runs this tune.json's recommended pipeline and backend configuration (threads: "
        "each setting's cores) instead of the ONNX export with --decoder, lean, numpy",
    )
    args = ap.parse_args(argv)
    args.recommended = None
    if args.tune_json is not None:
        from detbench.errors import DetbenchError
        from detbench.tune.pipelines import pipeline_for_script

        try:
            args.recommended = pipeline_for_script(args.tune_json, args.decoder, "--decoder")
        except DetbenchError as exc:
            ap.error(str(exc))
        args.decoder = args.recommended.decode
    args.decoder = args.decoder or "opencv"

    from detbench.runtimes.postprocess import ultralytics_nms

    ultralytics_nms()  # imports torchvision, so YOLO().predict's NMS runs its C++ kernel as ours does

    from detbench.data.datasets import load_dataset
    from detbench.data.photos import photo_dataset
    from detbench.model.baseline import resolve_weights, synthetic_dataset
    from detbench.perf.machine import cpu_model
    from detbench.runtimes.backends import REGISTRY

    imgsz = 128
    data = photo_dataset() if args.images == "photos" else synthetic_dataset()
    paths = load_dataset(data).images("val")[: args.limit]
    usable = sorted(os.sched_getaffinity(0))
    settings = [1] if len(usable) == 1 else [1, len(usable)]
    weights = resolve_weights(None)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = export_peer(weights, imgsz, Path(tmp) / "onnx", "onnx")
        args.peer_int8 = None
        if args.recommended is not None and REGISTRY[args.recommended.config.backend].precision == "int8":
            # NNCF, calibrated on the synthetic dataset.
            data_yaml = str(synthetic_dataset())
            args.peer_int8 = export_peer(
                weights, imgsz, Path(tmp) / "openvino-int8", "openvino", int8=True, data=data_yaml
            )
            print(f"peer: ultralytics' own int8=True OpenVINO export ({args.peer_int8.name}), same precision")
        results = [measure_cores(args, k, usable[:k], onnx, paths, imgsz) for k in settings]
        pin(usable)
    doc = {
        "images": f"{args.images} ({len(paths)} files)",
        "cpu": cpu_model(),
        "rounds": args.rounds,
        "passes": args.passes,
        "decoder": args.decoder,
        **(
            {}
            if args.recommended is None
            else {"tune_json": str(args.tune_json), "pipeline": pipe_label(args)}
        ),
        "results": [asdict(r) for r in results],
    }
    print(json.dumps(doc, indent=2))
    for res in results:
        print(f"-- {res.cores} core(s): median images/s over {args.rounds} rounds")
        for run in res.runs:
            print(f"   {run.name:22s} {run.median:8.1f}")
        for ratio in res.ratios:
            per = " ".join(f"{v:.2f}" for v in ratio.per_round)
            print(
                f"   {ratio.contender:22s} / {PEER}: {ratio.median:.2f} "
                f"[{ratio.lo:.2f}, {ratio.hi:.2f}]  rounds: {per}"
            )
    last = results[-1]
    best = max(
        (r for r in last.ratios if r.contender.startswith(("detbench-stream", "detbench-parallel"))),
        key=lambda r: r.median,
    )
    runs = {r.name: r for r in last.runs}
    print(
        f"throughput: {PEER} {runs[PEER].median:.1f} img/s, "
        f"detbench {runs[best.contender].median:.1f} img/s, "
        f"ratio {best.median:.2f} [{best.lo:.2f}, {best.hi:.2f}]"
    )


if __name__ == "__main__":
    main()
