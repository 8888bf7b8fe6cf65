"""``detbench report``: size, latency, throughput, accuracy and efficiency of every backend, in one run.

With no arguments it scores the committed baseline on the synthetic dataset through every backend
(exports are cached). Latency is each backend's steady state (``timing.steady_state``: blocks of
consecutive calls per backend, the blocks alternated A B C C B A ...), so a neighbour's job or thermal
drift hits every backend alike and the speedup ratios stay fair.
Eager PyTorch is always measured: it is the reference for speedups and output deviations.

Outputs in ``--out``: ``report.json``, ``report.md``, PNG plots; a table on the terminal.

report.json schema (``"schema": 1``; times in ms, sizes in bytes and MB = 1e6 bytes)::

    schema            1
    created           ISO-8601 UTC time the report was written
    duration_s        wall time of the whole run; step_s {step: seconds} splits it up
    settings          weights, weights_sha256, data, imgsz, threads, batch (throughput batch),
                      val_images (images scored; all of the split when not limited), rounds (kept calls per
                      backend), warmup (calls dropped at each block's start),
                      throughput_rounds, deviation_images, quick, backends [names, pytorch first]
    environment       cpu_model, cpu_flags [SIMD/matrix flags from /proc/cpuinfo], logical_cpus,
                      usable_cpus, load_average [1, 5, 15 min], threads, platform,
                      versions {python, detbench, torch, ultralytics, onnx, onnxruntime, onnxslim,
                      openvino}, git_commit (null outside a git checkout)
    model             gflops (per image at imgsz; null when ultralytics cannot count them), parameters
    peak              n, threads, repeats, best_s, gflops_per_s, library, candidates {library: GFLOP/s}
                      (float32 matmul, best of repeats, fastest library; see detbench.perf.peak)
    backends          list, one object per backend, pytorch first:
        name, reference (true for pytorch), artifact (path), artifact_bytes, size_mb,
        dynamic_batch, describe {the backend's own description},
        latency_ms        {batch, rounds, blocks, block_calls, discard, p50, p90, p99, mean, samples}
                          (per call at ``batch``, normally 1; rounds = kept calls; samples: every
                          kept call in ms, block after block, for ``report --compare``)
        throughput        {batch, rounds, images_per_s, p50_ms, reason}  (nulls + reason when the
                          artifact has a fixed batch)
        speedup           {ratio, ci_low, ci_high, confidence}: pytorch / this, the typical ratio of
                          side-by-side block medians and its paired BCa bootstrap CI
        accuracy          {mAP50, mAP50-95, precision, recall, images, per_class {class: {precision,
                          recall, mAP50, mAP50-95} (nulls: class absent from the split)}}
        deviation         {images, max_abs, box_max_abs, score_max_abs} vs pytorch's raw head output
        efficiency        {gflops_per_s_batch1, gflops_per_s_batchN, peak_fraction_batch1,
                          peak_fraction_batchN} (null where an input is missing)
    training          {source (metrics.json path or null), matches_weights, epochs [per-epoch losses and
                      metrics as written by detbench.model.train], final, per_class, note}
    history           {dirs [searched], runs [{file, datetime, label, medians_ms {benchmark: ms}}],
                      skipped [one line per unreadable file], note}
    plots             {latency_vs_size, per_class_map50, training_curves, latency_history}: file name
                      in --out, or null when not drawn (``notes`` says why)
    class_names       the model's classes, in id order (rows of the per-class tables)
    verdict           {passed, failed_backends [names], checks [{backend, kind (tolerance | accuracy |
                      size budget | latency budget), name, passed, reason}]} (detbench.report.verdict)
    notes             list of sentences: everything skipped or approximated, and why
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from detbench import paths
from detbench.errors import DatasetError, DetbenchError
from detbench.perf.timing import DISCARD
from detbench.runtimes.cache import artifact_size

SCHEMA = 1
DEVIATION_IMAGES = 16
_FLAG_RE = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|avx_vnni\w*|avx512\w*|amx\w*)$")


@dataclass(frozen=True)
class ReportSettings:
    weights: Path | None
    data: Path | None
    imgsz: int | None
    threads: int
    artifacts: tuple[str, ...]
    backends: tuple[str, ...]
    batch: int
    out: Path
    quick: bool
    val_images: int | None  # None: the whole val split
    rounds: int
    warmup: int
    throughput_rounds: int
    matmul_n: int
    matmul_repeats: int
    default_backends: bool  # the user did not choose: an absent optional runtime is skipped, not fatal

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReportSettings:
        from detbench.runtimes.backends import REGISTRY

        quick = bool(getattr(args, "quick", False))
        rounds = getattr(args, "rounds", None) or (40 if quick else 160)
        val_images = getattr(args, "val_images", None) or (64 if quick else None)
        backends = list(getattr(args, "backends", None) or REGISTRY)
        return cls(
            weights=args.weights,
            data=args.data,
            imgsz=args.imgsz,
            threads=args.threads,
            artifacts=tuple(args.artifact or ()),
            backends=tuple(dict.fromkeys(["pytorch", *backends])),
            batch=args.batch,
            out=Path(args.out),
            quick=quick,
            val_images=val_images,
            rounds=rounds,
            warmup=DISCARD,
            throughput_rounds=max(3, rounds // 3),
            matmul_n=1024 if quick else 2048,
            matmul_repeats=5,
            default_backends=backends == list(REGISTRY),
        )


# -- small measurements ------------------------------------------------------------------------------


def environment(threads: int) -> dict[str, Any]:
    from detbench.perf.history import cpu_model, read_cpuinfo
    from detbench.runtimes.export import toolchain_versions

    fields = read_cpuinfo()
    flags = sorted(
        f for f in (fields.get("flags") or fields.get("features") or "").split() if _FLAG_RE.match(f)
    )
    model = cpu_model(fields)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": model or "unknown",
        "cpu_flags": flags,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "threads": threads,
        "platform": platform.platform(),
        "versions": toolchain_versions(),
        "git_commit": git_commit(),
    }


def git_commit(repo: Path | None = None) -> str | None:
    """HEAD of the git checkout the user runs detbench in (default: the working directory); None
    outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def load_training(weights: Path) -> dict[str, Any]:
    """The baseline's training record (``metrics.json`` written by ``detbench train``) next to the weights."""
    from detbench.model.train import METRICS_FILE, sha256_file

    empty = {"source": None, "matches_weights": None, "epochs": [], "final": None, "per_class": None}
    path = weights.parent / METRICS_FILE
    if not path.is_file():
        return {
            **empty,
            "note": f"no {METRICS_FILE} next to {weights}: training curves and the training "
            "per-class table are not available for these weights",
        }
    try:
        doc = json.loads(path.read_text())
        epochs = list(doc.get("epochs") or [])
    except (OSError, ValueError, AttributeError) as exc:
        return {**empty, "note": f"{path}: unreadable ({exc}); training metrics left out"}
    matches = doc.get("weights_sha256") == sha256_file(weights)
    notes = (
        []
        if matches
        else [
            f"{path} was written for other weights (sha256 differs from {weights.name}); "
            "shown for reference only"
        ]
    )
    if not epochs:
        notes.append(f"{path} has no per-epoch record: no training curves")
    note = "; ".join(notes)
    return {
        "source": str(path),
        "matches_weights": matches,
        "epochs": epochs,
        "final": doc.get("final"),
        "per_class": doc.get("per_class"),
        "note": note,
    }


def history_dirs() -> list[Path]:
    return [Path.cwd() / ".benchmarks", paths.cache_root() / "history"]  # looked in, never created


def collect_history(dirs: Sequence[Path]) -> dict[str, Any]:
    """Median latency of every benchmark in each saved pytest-benchmark run found under ``dirs``.

    Only the summary median is needed, so runs saved without raw data count too; a file that is not
    a pytest-benchmark run is listed under ``skipped`` with the reason, never dropped silently.
    """
    runs, skipped = [], []
    files = sorted({p.resolve() for d in dirs if d.is_dir() for p in d.rglob("*.json")})
    for f in files:
        try:
            doc = json.loads(f.read_text())
            medians = {
                str(b.get("fullname") or b["name"]): float(b["stats"]["median"]) * 1e3
                for b in doc["benchmarks"]
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            skipped.append(f"{f}: not a readable pytest-benchmark run ({type(exc).__name__}: {exc})")
            continue
        if not medians:
            skipped.append(f"{f}: contains no benchmarks")
            continue
        saved = doc.get("datetime") or datetime.fromtimestamp(f.stat().st_mtime, UTC).isoformat()
        stamp = str(saved)
        runs.append({"file": str(f), "datetime": stamp, "medians_ms": medians})
    runs.sort(key=lambda r: r["datetime"])
    for r in runs:  # pytest-benchmark numbers its saves (0001_...): keep the number when there is one
        number = re.match(r"\d+", Path(r["file"]).stem)
        r["label"] = f"{number.group() + ' ' if number else ''}{r['datetime'][:16]}"
    note = (
        ""
        if runs
        else (
            "no saved benchmark runs under "
            + ", ".join(str(d) for d in dirs)
            + " (save some with pytest --benchmark-enable --benchmark-autosave)"
        )
    )
    return {"dirs": [str(d) for d in dirs], "runs": runs, "skipped": skipped, "note": note}


def _steady_state(
    fns: Sequence[Callable[[], object]], calls: int, prog: Any, task: Any
) -> tuple[list[np.ndarray], tuple[int, int, int]]:
    """``timing.steady_state`` keeping about ``calls`` calls per backend, moving ``task`` of the
    progress bar after every block; returns the samples and the (blocks, block_calls, discard) plan."""
    from detbench.perf.timing import plan_blocks, steady_state

    plan = blocks, block_calls, discard = plan_blocks(calls)
    prog.update(task, total=len(fns) * blocks * (block_calls - discard))
    samples = steady_state(
        fns, blocks=blocks, block_calls=block_calls, discard=discard, on_block=lambda k: prog.advance(task, k)
    )
    return samples, plan


def _batch_of(x: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(x, (n, *x.shape[1:])))  # tiles the images if fewer than n


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _clean(obj: Any) -> Any:
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _clean(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


# -- the run -----------------------------------------------------------------------------------------


def _progress(console: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def build_report(s: ReportSettings, console: Any = None) -> dict[str, Any]:
    """Measure everything and return the report.json document (nothing is written here)."""
    from detbench.data.datasets import load_dataset
    from detbench.model.baseline import resolve_weights, synthetic_dataset
    from detbench.model.checkpoint import load_detection_model
    from detbench.model.train import model_stats, sha256_file
    from detbench.perf.peak import matmul_peak
    from detbench.perf.stats import paired_ratio_ci, percentiles
    from detbench.perf.timing import block_medians
    from detbench.report import verdict
    from detbench.runtimes.backends import REGISTRY, BackendSettings
    from detbench.runtimes.preprocess import load_image, preprocess
    from detbench.runtimes.workbench import Workbench, parse_artifact_overrides
    from detbench.verify.accuracy import evaluate
    from detbench.verify.compare import deviation

    t0 = time.perf_counter()
    notes: list[str] = []
    weights = resolve_weights(s.weights)
    data_yaml = Path(s.data).resolve() if s.data else synthetic_dataset()
    ds = load_dataset(data_yaml)
    _, info = load_detection_model(weights)
    imgsz = s.imgsz or info.imgsz
    if ds.names != info.names:
        raise DatasetError(
            data_yaml, f"classes {list(ds.names)} do not match the weights' {list(info.names)}"
        )
    if "val" not in ds.splits:
        raise DatasetError(data_yaml, "no val split: the report scores accuracy on it")
    val = ds.images("val")
    if not val:
        raise DatasetError(data_yaml, f"val split {ds.splits['val']} has no images")
    n_val = min(len(val), s.val_images or len(val))
    if s.val_images and s.val_images > len(val):
        notes.append(f"--val-images {s.val_images} > the {len(val)} val images: all of them were scored")

    names = list(s.backends)
    if s.default_backends:  # the user did not choose: what cannot run here is left out, saying why
        for name in [n for n in names if REGISTRY[n].unavailable()]:
            names.remove(name)
            notes.append(f"{name} was skipped: {REGISTRY[name].unavailable()}")
    overrides = parse_artifact_overrides(list(s.artifacts))
    for name in overrides:
        if name not in names:
            notes.append(f"--artifact {name}=... ignored: backend {name} is not in --backends")
    int8 = any(REGISTRY[n].precision == "int8" for n in names)
    calib = ds.images("train") if int8 and "train" in ds.splits else []
    bench = Workbench(
        weights=weights,
        imgsz=imgsz,
        names=info.names,
        settings=BackendSettings(threads=s.threads),
        overrides=overrides,
        calib_images=calib,
    )

    timings: dict[str, float] = {}
    checks: list[verdict.Check] = []
    loaded: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    with _progress(console) as prog:
        # Exports and loads (cached exports make this quick after the first run).
        t = time.perf_counter()
        task = prog.add_task("export + load", total=len(names))
        for name in names:
            prog.update(task, description=f"export + load {name}")
            backend = bench.load(name)
            loaded[name] = backend
            size = artifact_size(backend.artifact)
            rows[name] = {
                "name": name,
                "reference": name == "pytorch",
                "artifact": str(backend.artifact),
                "artifact_bytes": size,
                "size_mb": size / 1e6,
                "dynamic_batch": backend.dynamic_batch,
                "describe": backend.describe(),
            }
            prog.advance(task)
        timings["export_load"] = time.perf_counter() - t

        # Raw-output deviation from the eager baseline on a fixed set of val images.
        t = time.perf_counter()
        dev_imgs = [load_image(p) for p in val[: min(DEVIATION_IMAGES, len(val))]]
        x_dev, _ = preprocess(dev_imgs, imgsz)
        ref = loaded["pytorch"].run_batched(x_dev)
        for name, backend in loaded.items():
            out = backend.run_batched(x_dev)
            checks.append(verdict.tolerance_check(name, ref, out))
            d = deviation(ref, out)
            rows[name]["deviation"] = {
                "images": len(x_dev),
                "max_abs": d.max_abs,
                "box_max_abs": d.box_max_abs,
                "score_max_abs": d.score_max_abs,
            }
        timings["deviation"] = time.perf_counter() - t

        # Accuracy through every backend.
        t = time.perf_counter()
        task = prog.add_task("accuracy", total=n_val * len(names))
        for name, backend in loaded.items():
            prog.update(task, description=f"accuracy {name}")
            acc = evaluate(
                backend, ds, imgsz=imgsz, batch=s.batch, limit=n_val, progress=lambda k: prog.advance(task, k)
            )
            rows[name]["accuracy"] = acc.to_dict()
        checks += [
            verdict.accuracy_check(n, rows["pytorch"]["accuracy"], rows[n]["accuracy"])
            for n in names
            if n != "pytorch"
        ]
        timings["accuracy"] = time.perf_counter() - t

        # The yardstick, measured right before the latency runs so both see the same machine load.
        t = time.perf_counter()
        task = prog.add_task(f"matmul peak (n={s.matmul_n})", total=1)
        peak = matmul_peak(s.matmul_n, threads=s.threads, repeats=s.matmul_repeats)
        prog.advance(task)
        timings["peak"] = time.perf_counter() - t

        # Latency at batch 1: every backend's steady state, in alternated blocks.
        t = time.perf_counter()
        x1 = x_dev[:1]
        inputs = {
            n: x1 if b.dynamic_batch or b.spec.batch == 1 else _batch_of(x1, b.spec.batch)
            for n, b in loaded.items()
        }
        for n, x in inputs.items():
            if len(x) != 1:
                notes.append(
                    f"{n}: the artifact has a fixed batch of {len(x)}; its latency is per call of "
                    f"{len(x)} images and its speedup per image"
                )
        fns = [lambda b=loaded[n], x=inputs[n]: b.run(x) for n in names]
        task = prog.add_task("latency (batch 1)", total=None)
        lat, lat_plan = _steady_state(fns, s.rounds, prog, task)
        samples = dict(zip(names, lat))
        for n in names:
            ms = samples[n] * 1e3
            rows[n]["latency_ms"] = {
                "batch": len(inputs[n]),
                "rounds": int(ms.size),
                "blocks": lat_plan[0],
                "block_calls": lat_plan[1],
                "discard": lat_plan[2],
                **percentiles(ms),
                "mean": float(ms.mean()),
                "samples": [round(float(v), 5) for v in ms],  # for ``report --compare``'s gate
            }
        per_image = {n: samples[n] / len(inputs[n]) for n in names}
        for n in names:
            # Block k of every backend ran side by side: the paired ratio of block medians cancels drift.
            ratio, low, high = paired_ratio_ci(
                block_medians(per_image[n], lat_plan[0]), block_medians(per_image["pytorch"], lat_plan[0])
            )
            rows[n]["speedup"] = {"ratio": ratio, "ci_low": low, "ci_high": high, "confidence": 0.95}
        timings["latency"] = time.perf_counter() - t

        # Throughput at batch N for the backends that take any batch, in alternated blocks too.
        t = time.perf_counter()
        dyn = [n for n in names if loaded[n].dynamic_batch]
        xn = _batch_of(x_dev, s.batch)
        task = prog.add_task(f"throughput (batch {s.batch})", total=None if dyn else 0)
        tp: dict[str, np.ndarray] = {}
        if dyn:
            fns = [lambda b=loaded[n]: b.run(xn) for n in dyn]
            tp_samples, _ = _steady_state(fns, s.throughput_rounds, prog, task)
            tp = dict(zip(dyn, tp_samples))
        for n in names:
            if n in tp:
                med = float(np.median(tp[n]))
                rows[n]["throughput"] = {
                    "batch": s.batch,
                    "rounds": int(tp[n].size),
                    "images_per_s": s.batch / med,
                    "p50_ms": med * 1e3,
                    "reason": None,
                }
            else:
                rows[n]["throughput"] = {
                    "batch": s.batch,
                    "rounds": 0,
                    "images_per_s": None,
                    "p50_ms": None,
                    "reason": f"artifact has a fixed batch of {loaded[n].spec.batch}; "
                    "export it with a dynamic batch to measure throughput",
                }
        timings["throughput"] = time.perf_counter() - t

        # Budgets: sizes, and each latency ratio in its own alternated-block run, as the tests judge them.
        t = time.perf_counter()
        checks += _budget_checks(names, loaded, rows, weights, x1, notes)
        timings["budgets"] = time.perf_counter() - t

    stats = model_stats(weights, imgsz)
    gflops = stats["gflops"] or None
    if gflops is None:
        notes.append("ultralytics could not count the model's FLOPs (thop missing?): efficiency left out")
    for n in names:
        r = rows[n]
        per_img_s = r["latency_ms"]["p50"] / 1e3 / r["latency_ms"]["batch"]
        g1 = gflops / per_img_s if gflops else None
        gn = gflops * r["throughput"]["images_per_s"] if gflops and r["throughput"]["images_per_s"] else None
        r["efficiency"] = {
            "gflops_per_s_batch1": g1,
            "gflops_per_s_batchN": gn,
            "peak_fraction_batch1": _ratio(g1, peak.gflops_per_s),
            "peak_fraction_batchN": _ratio(gn, peak.gflops_per_s),
        }

    training = load_training(weights)
    history = collect_history(history_dirs())
    for item in (training["note"], history["note"]):
        if item:
            notes.append(item)
    notes.extend(f"history: {line}" for line in history["skipped"])
    timings["total"] = time.perf_counter() - t0
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": timings["total"],
        "step_s": timings,
        "settings": {
            "weights": str(weights),
            "weights_sha256": sha256_file(weights),
            "data": str(data_yaml),
            "imgsz": imgsz,
            "threads": s.threads,
            "batch": s.batch,
            "val_images": n_val,
            "rounds": s.rounds,
            "warmup": s.warmup,
            "throughput_rounds": s.throughput_rounds,
            "deviation_images": len(x_dev),
            "quick": s.quick,
            "backends": names,
        },
        "environment": environment(s.threads),
        "model": {"gflops": gflops, "parameters": stats["parameters"]},
        "peak": peak.to_dict(),
        "backends": [rows[n] for n in names],
        "class_names": list(info.names),
        "training": training,
        "history": history,
        "plots": {},
        "verdict": {
            "passed": all(c.passed for c in checks),
            "failed_backends": [n for n in names if not all(c.passed for c in checks if c.backend == n)],
            "checks": verdict.to_dicts(checks),
        },
        "notes": notes,
    }


def _budget_checks(names, loaded, rows, weights, x1, notes) -> list:
    """Size and latency budgets of fixtures/budgets.toml for the backends in this report."""
    from detbench.perf.budgets import load_budgets
    from detbench.perf.history import cpu_flags
    from detbench.report import verdict
    from detbench.runtimes.backends import REGISTRY

    budgets = load_budgets()
    backend_of = {REGISTRY[n].artifact_format: n for n in names if REGISTRY[n].artifact_format}
    sizes = {"checkpoint": artifact_size(weights)}
    sizes.update({fmt: rows[n]["artifact_bytes"] for fmt, n in backend_of.items()})
    runners = {n: (lambda b=loaded[n]: b.run(x1)) for n in names if loaded[n].dynamic_batch}
    latency, skipped = verdict.latency_checks(budgets, runners, set(cpu_flags()))
    notes.extend(skipped)
    return verdict.size_checks(budgets, sizes, backend_of) + latency


# -- writing -----------------------------------------------------------------------------------------


def _f(value: Any, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


TABLE_HEADER = (
    "backend",
    "size MB",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "img/s @N",
    "speedup [95% CI]",
    "mAP50",
    "mAP50-95",
    "max dev box / score",
)


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """The summary table, one row per backend, as strings (shared by the terminal and report.md)."""
    out = []
    for r in report["backends"]:
        lat, sp, acc, dev = r["latency_ms"], r["speedup"], r["accuracy"], r["deviation"]
        out.append(
            [
                r["name"],
                f"{r['size_mb']:.2f}",
                f"{lat['p50']:.2f}",
                f"{lat['p90']:.2f}",
                f"{lat['p99']:.2f}",
                _f(r["throughput"]["images_per_s"], ".1f"),
                f"{sp['ratio']:.2f}x [{sp['ci_low']:.2f}, {sp['ci_high']:.2f}]",
                f"{acc['mAP50']:.4f}",
                f"{acc['mAP50-95']:.4f}",
                f"{dev['box_max_abs']:.1e} / {dev['score_max_abs']:.1e}",
            ]
        )
    return out


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    s, env, peak = report["settings"], report["environment"], report["peak"]
    batch = s["batch"]
    parts = [
        "# detbench report",
        f"Weights `{s['weights']}` (sha256 `{s['weights_sha256'][:16]}…`), data `{s['data']}`, "
        f"imgsz {s['imgsz']}, {s['threads']} thread(s); {s['val_images']} val images scored, latency over "
        f"{s['rounds']} calls at batch 1 (steady state: alternated blocks of consecutive calls, the first "
        f"{s['warmup']} of each block dropped), throughput over {s['throughput_rounds']} calls at "
        f"batch {batch}"
        f"{' (--quick)' if s['quick'] else ''}. Created {report['created']} in {report['duration_s']:.0f} s.",
        "## Summary",
        _md_table([h.replace("@N", f"@{batch}") for h in TABLE_HEADER], table_rows(report)),
        "Speedup is median(pytorch) / median(backend) at batch 1 with a bootstrap 95% interval; max dev "
        "is the largest absolute difference from eager PyTorch's raw head on "
        f"{s['deviation_images']} val images "
        "(box channels in input pixels, score channels in probability).",
    ]
    for r in report["backends"]:
        if r["throughput"]["reason"]:
            parts.append(f"- {r['name']}: no throughput: {r['throughput']['reason']}")
    gfl = report["model"]["gflops"]
    parts += [
        "## Efficiency",
        f"{_f(gfl, '.3f')} GFLOPs per image at {s['imgsz']} px. Measured float32 matmul peak: "
        f"{peak['gflops_per_s']:.1f} GFLOP/s ({peak['library']}, n={peak['n']}, {peak['threads']} thread(s), "
        f"best of {peak['repeats']}; all libraries tried: "
        + ", ".join(f"{k} {_f(v, '.1f', 'failed')}" for k, v in peak["candidates"].items())
        + "). INT8 backends do 8-bit arithmetic, so their share of the float32 peak can pass 100%.",
        _md_table(
            ["backend", "GFLOP/s @1", "% of peak @1", f"GFLOP/s @{batch}", f"% of peak @{batch}"],
            [
                [
                    r["name"],
                    _f(e["gflops_per_s_batch1"], ".2f"),
                    _f(_pct(e["peak_fraction_batch1"]), ".1f"),
                    _f(e["gflops_per_s_batchN"], ".2f"),
                    _f(_pct(e["peak_fraction_batchN"]), ".1f"),
                ]
                for r in report["backends"]
                for e in [r["efficiency"]]
            ],
        ),
        "## Per-class accuracy (precision / recall / mAP50)",
        _md_table(
            ["class", *(r["name"] for r in report["backends"])],
            [
                [c, *(_prm(r["accuracy"]["per_class"].get(c)) for r in report["backends"])]
                for c in report["class_names"]
            ],
        ),
        "## Training",
    ]
    tr = report["training"]
    if tr["source"]:
        parts.append(f"From `{tr['source']}`" + (f" ({tr['note']})" if tr["note"] else "") + ".")
        if isinstance(tr["final"], dict):
            parts.append(
                "Final validation at the end of training (ultralytics, full val split): "
                + ", ".join(
                    f"{k} {_f(tr['final'].get(k), '.4f')}"
                    for k in ("precision", "recall", "mAP50", "mAP50-95")
                )
                + "."
            )
        if tr["epochs"]:
            keys = [
                k
                for k in ("train_box_loss", "train_cls_loss", "train_dfl_loss", "mAP50", "mAP50-95")
                if all(k in e for e in tr["epochs"])
            ]
            parts.append(
                _md_table(
                    ["epoch", *keys],
                    [[str(e.get("epoch")), *(f"{e[k]:.4f}" for k in keys)] for e in tr["epochs"]],
                )
            )
        if tr["per_class"]:
            parts.append(
                _md_table(
                    ["class", "precision", "recall", "mAP50", "mAP50-95"],
                    [
                        [c, *(_f(v.get(k), ".3f") for k in ("precision", "recall", "mAP50", "mAP50-95"))]
                        for c, v in tr["per_class"].items()
                    ],
                )
            )
    else:
        parts.append(tr["note"])
    parts.append("## Plots")
    for key, title in (
        ("latency_vs_size", "Latency vs size"),
        ("per_class_map50", "Per-class mAP50"),
        ("training_curves", "Training curves"),
        ("latency_history", "Latency history"),
    ):
        f = report["plots"].get(key)
        parts.append(f"![{title}]({f})" if f else f"- {title}: not drawn (see notes)")
    parts += [
        "## Environment",
        f"- CPU: {env['cpu_model']}; {env['logical_cpus']} logical CPUs ({env['usable_cpus']} usable); "
        f"load average {', '.join(str(x) for x in env['load_average'])}",
        f"- CPU flags: {' '.join(env['cpu_flags']) or 'unknown'}",
        f"- threads: {env['threads']}; platform: {env['platform']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"- git commit: {env['git_commit'] or 'unknown (not a git checkout)'}",
    ]
    if report["notes"]:
        parts += ["## Notes", *(f"- {n}" for n in report["notes"])]
    return "\n\n".join(parts) + "\n"


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else fraction * 100


def _prm(v: dict | None) -> str:
    if not v or v.get("mAP50") is None:
        return "absent"
    return f"{v['precision']:.2f} / {v['recall']:.2f} / {v['mAP50']:.2f}"


def draw_plots(report: dict[str, Any], out: Path) -> dict[str, str | None]:
    from detbench.report import plots

    drawn: dict[str, str | None] = {}
    drawn["latency_vs_size"] = plots.latency_vs_size(report["backends"], out / "latency_vs_size.png").name
    drawn["per_class_map50"] = plots.per_class_map50(
        report["backends"], report["class_names"], out / "per_class_map50.png"
    ).name
    epochs, runs = report["training"]["epochs"], report["history"]["runs"]
    drawn["training_curves"] = drawn["latency_history"] = None
    if epochs:
        drawn["training_curves"] = plots.training_curves(epochs, out / "training_curves.png").name
    if runs:
        drawn["latency_history"] = plots.latency_history(runs, out / "latency_history.png").name
    return drawn


def write_report(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """Draw the plots, then write report.json and report.md atomically; return what was written."""
    from detbench.runtimes.cache import atomic_write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DetbenchError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = draw_plots(report, out)  # a plot left out is explained by the training/history notes
    doc = _clean(report)
    atomic_write_text(out / "report.json", json.dumps(doc, indent=2, allow_nan=False) + "\n")
    atomic_write_text(out / "report.md", render_markdown(doc))
    written = {"json": out / "report.json", "md": out / "report.md"}
    written.update({k: out / v for k, v in doc["plots"].items() if v})
    return written


def print_table(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    batch = report["settings"]["batch"]
    table = Table(
        title=f"detbench report — {Path(report['settings']['weights']).name}, "
        f"imgsz {report['settings']['imgsz']}, {report['settings']['threads']} thread(s)"
    )
    for i, h in enumerate(TABLE_HEADER):
        table.add_column(h.replace("@N", f"@{batch}"), justify="left" if i == 0 else "right")
    for row in table_rows(report):
        table.add_row(*row)
    console.print(table)
    gflops, peak = report["model"]["gflops"], report["peak"]
    if gflops:
        achieved = ", ".join(
            f"{r['name']} {_f(_pct(r['efficiency']['peak_fraction_batch1']), '.0f')}%"
            for r in report["backends"]
        )
        console.print(
            f"{gflops:.3f} GFLOPs/image; measured matmul peak {peak['gflops_per_s']:.1f} GFLOP/s "
            f"({peak['library']}); share of it at batch 1: {achieved}",
            highlight=False,
            soft_wrap=True,
        )
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


def run_report(args: argparse.Namespace) -> int:
    """The ``detbench report`` subcommand."""
    from rich.console import Console

    settings = ReportSettings.from_args(args)
    if settings.out.exists() and not settings.out.is_dir():  # fail before minutes of measuring
        raise DetbenchError(f"--out {settings.out}: exists and is not a directory")
    report = build_report(settings, console=Console(stderr=True))
    written = write_report(report, settings.out)
    console = Console()
    if not console.is_terminal:  # piped or captured: rich would squeeze the table into 80 columns
        console = Console(width=200)
    print_table(_clean(report), console)
    console.print(f"wrote {', '.join(str(p) for p in written.values())}", highlight=False, soft_wrap=True)
    return print_verdict(report, console, compare=getattr(args, "compare", None))


def print_verdict(report: dict[str, Any], console: Any, *, compare: Path | None = None) -> int:
    """PASS/FAIL per backend (and, with ``compare``, each backend's change); 1 if any failed or regressed."""
    from detbench.report import verdict

    checks = report["verdict"]["checks"]
    for line in verdict.verdict_lines(report["settings"]["backends"], checks):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    code = 0 if report["verdict"]["passed"] else 1
    if compare is not None:
        changes = verdict.compare_reports(load_report(compare), report)
        console.print(f"compared with {compare}:", highlight=False, soft_wrap=True)
        for line in verdict.comparison_lines(changes):
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
        code = max(code, int(verdict.any_regression(changes)))
    return code


def load_report(path: Path) -> dict[str, Any]:
    """A report.json written by ``detbench report`` (any schema-1 file); errors name the file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DetbenchError(f"--compare {path}: no such file; pass an earlier report.json") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DetbenchError(f"--compare {path}: not a readable report.json ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("backends"), list):
        raise DetbenchError(f"--compare {path}: not a detbench report.json (schema {SCHEMA})")
    return doc


__all__ = [
    "SCHEMA",
    "ReportSettings",
    "build_report",
    "collect_history",
    "environment",
    "git_commit",
    "load_training",
    "render_markdown",
    "run_report",
    "write_report",
]
