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

Part 2 (``--scale m``): ``detbench tune``'s search, latency only, on an untrained YOLOv8m at 128 px,
and the recommended configuration's speedup over eager PyTorch at 1 thread, both from that one
steady-state run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from detbench.paths import configure_environment

DEFAULT_FORMATS = ("-", "torchscript", "onnx", "openvino")
INT8_FORMATS = ("onnx", "openvino")
SPEED_COL = "Inference time (ms/im)"
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
    doc = json.loads(Path(args.tune_json).read_text())
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


def main(argv: list[str] | None = None) -> int:
    configure_environment()
    from detbench.runtimes.backends import REGISTRY

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, help="checkpoint (default: the committed baseline)")
    p.add_argument("--data", type=Path, help="data.yaml (default: the synthetic dataset)")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--tune-json", type=Path, default=Path("tune/tune.json"), help="detbench tune's output")
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
    p.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    result = part_scale(args) if args.scale else part_ultralytics(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
