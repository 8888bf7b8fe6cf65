"""The steps of ``detbench report``: each takes what it needs and returns its results.

Timing itself is ``perf.measure``'s; these resolve the inputs, load the backends and shape what was
measured into the parts of report.json's records (``report.records``). Nothing here renders or
writes; ``report.build`` sequences the steps and builds the report from their results, and
``report.render`` shows it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detbench import paths
from detbench._fs import sha256_file
from detbench.errors import DatasetError, HistoryError
from detbench.history import benchjson
from detbench.perf.measure import LatencyResult, measure_latency
from detbench.report.records import (
    Deviation,
    Efficiency,
    Isa,
    Latency,
    Peak,
    PipelineVariants,
    Speedup,
    ThreadLatency,
)
from detbench.runtimes.cache import artifact_size
from detbench.schema import from_json

if TYPE_CHECKING:
    from detbench.perf.pipeline_timing import StagePlan
    from detbench.verify.accuracy_cache import AccuracyStore

DEVIATION_IMAGES = 16
STAGE_IMAGES = 16  # val images timed through decode, preprocess, inference, postprocess
STAGE_PHOTOS = 6  # photo-sized JPEGs timed the same way, spread over the sizes: a short step


@dataclass
class Inputs:
    """Resolved inputs of one report: weights, dataset, model info, the backends to run."""

    weights: Path
    data_yaml: Path
    dataset: Any
    info: Any
    imgsz: int
    val: list[Path]
    n_val: int
    names: list[str]
    overrides: dict[str, Path]
    notes: list[str] = field(default_factory=list)


def stage_photos(n: int = STAGE_PHOTOS) -> list[Path]:
    """``n`` photos of the photo-sized set (``data.photos``, generated once into the cache), taken in
    turn from each stored size so every size is timed."""
    from detbench.data.datasets import load_dataset
    from detbench.data.photos import PHOTO_SIZES, photo_dataset

    files = load_dataset(photo_dataset()).images("val")
    by_size = [[p for p in files if p.name.startswith(f"{w}x{h}_")] for w, h in PHOTO_SIZES]
    turns = [p for row in zip(*by_size) for p in row]  # 640 #0, 1280 #0, 1920 #0, 640 #1, ...
    return turns[:n]


def photo_pipeline(tune_json: Path | None) -> PipelineVariants:
    """The pipeline the report times end to end beside the reference on the photos: the variants of
    tune.json's recommended pipeline (``--tune-json``), else each stage's identical alternative
    (``runtimes.pipeline.identical_alternative``). A tune.json that cannot be read, recommends no
    pipeline or names a variant this detbench does not register is a ``DetbenchError`` naming it."""
    from detbench.errors import DetbenchError
    from detbench.runtimes import pipeline as stages

    if tune_json is None:
        chosen = tuple(stages.identical_alternative(stage).name for stage in stages.STAGES)
        source = "identical variants"
    else:
        from detbench.tune.pipelines import read_recommended

        if not tune_json.is_file():
            raise DetbenchError(
                f"--tune-json {tune_json}: no such file (detbench tune writes tune/tune.json)"
            )
        rec = read_recommended(tune_json)
        chosen = (rec.decode, rec.preprocess, rec.postprocess)
        source = "tune.json"
    try:
        identical = stages.claims_identical(chosen)
    except ValueError as exc:  # tune.json from a detbench that registers other variants
        raise DetbenchError(f"--tune-json {tune_json}: {exc}") from None
    return PipelineVariants(
        source=source,
        tune_json=None if tune_json is None else str(tune_json),
        decode=chosen[0],
        preprocess=chosen[1],
        postprocess=chosen[2],
        identical=identical,
    )


def measure_photo_pipelines(
    loaded: Mapping[str, Any],
    photos: Sequence[Path],
    imgsz: int,
    names: Sequence[str],
    threads: int,
    chosen: PipelineVariants,
    *,
    plan: StagePlan | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The photo step: the reference pipeline on every backend and ``chosen`` beside it, in one
    alternated run (``perf.measure.measure_pipelines``); returns (photo_stages_ms rows,
    recommended_photo_stages_ms rows). ``chosen`` runs on a backend only once admitted the way tune
    admits a pipeline (``tune.pipelines.admit``: an identical one as claimed, one with a reduced decode
    after its detections on ``photos`` through that backend match the reference pipeline's within
    ``verify.decode``'s row); a refused backend's row gives the reason, and nothing of it is timed."""
    from detbench.perf.measure import measure_pipelines, reference_calls
    from detbench.runtimes.end2end import is_end2end
    from detbench.runtimes.pipeline import REFERENCES, STAGES, BackendConfig, Pipeline
    from detbench.tune.pipelines import Config, admit

    per_image = [n for n, b in loaded.items() if b.dynamic_batch or b.spec.batch == 1]
    specs = {
        n: Pipeline(
            BackendConfig(n, threads, Path(loaded[n].artifact), imgsz, tuple(names)),
            chosen.decode,
            chosen.preprocess,
            chosen.postprocess,
        )
        for n in loaded
    }
    pipelines: dict[str, dict[str, Any]] = {
        "reference": reference_calls(loaded, imgsz, names),
        "recommended": {},
    }
    untimed: dict[str, str] = {}  # backend -> why chosen is not timed on it
    if (chosen.decode, chosen.preprocess, chosen.postprocess) == tuple(REFERENCES[s] for s in STAGES):
        untimed = dict.fromkeys(loaded, "the reference pipeline itself: see photo_stages_ms")
    else:
        points = [(Config(i, n, specs[n].config, loaded[n]), specs[n]) for i, n in enumerate(per_image)]
        for n, reason in zip(per_image, admit(points, photos)):
            if reason is not None:
                untimed[n] = f"not admitted: {reason}"
        pipelines["recommended"] = {
            n: specs[n].calls(end2end=is_end2end(loaded[n])) for n in loaded if n not in untimed
        }
    timed = measure_pipelines(loaded, photos, pipelines, plan=plan, clock=clock)
    recommended = {n: timed["recommended"].get(n) or {"images": 0, "reason": untimed[n]} for n in loaded}
    return timed["reference"], recommended


def untimed_notes(
    photo_rows: Mapping[str, Mapping[str, Any]], recommended_rows: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """One note per reason the recommended pipeline was not timed on some backends (a refused
    admission, say), the backends named; a reason the reference's row shares (a fixed batch) is left
    to that row."""
    by_reason: dict[str, list[str]] = {}
    for n, row in recommended_rows.items():
        if row["reason"] and row["reason"] != photo_rows[n]["reason"]:
            by_reason.setdefault(row["reason"], []).append(n)
    return [
        f"{', '.join(ns)}: recommended pipeline not timed on the photos: {why}"
        for why, ns in by_reason.items()
    ]


def resolve_inputs(s: Any) -> Inputs:
    """Weights, dataset and backend list from the settings; refuses a dataset that cannot be scored."""
    from detbench.data.datasets import load_dataset
    from detbench.model.baseline import resolve_weights, synthetic_dataset
    from detbench.model.checkpoint import load_detection_model
    from detbench.runtimes.backends import REGISTRY
    from detbench.runtimes.workbench import parse_artifact_overrides

    notes: list[str] = []
    weights = resolve_weights(s.weights)
    data_yaml = Path(s.data).resolve() if s.data else synthetic_dataset()
    ds = load_dataset(data_yaml)
    _, info = load_detection_model(weights)
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
    if s.default_backends:  # the user chose none: what cannot run here, or has no artifact for these
        # weights (end2end without a one-to-one head), is left out, saying why
        reasons = {n: REGISTRY[n].unavailable() or REGISTRY[n].model_unavailable(weights) for n in names}
        names = [n for n in names if not reasons[n]]
        notes += [f"{n} left out: {why}" for n, why in reasons.items() if why]
        if not s.full:
            opt_in = {n: REGISTRY[n].opt_in for n in names if REGISTRY[n].opt_in}
            names = [n for n in names if n not in opt_in]
            notes += [
                f"{n} left out of the default run ({why}): name it in --backends, or run --full"
                for n, why in opt_in.items()
            ]
    overrides = parse_artifact_overrides(list(s.artifacts))
    for name in overrides:
        if name not in names:
            notes.append(f"--artifact {name}=... ignored: backend {name} is not in --backends")
    return Inputs(weights, data_yaml, ds, info, s.imgsz or info.imgsz, val, n_val, names, overrides, notes)


def workbench(inp: Inputs, threads: int) -> Any:
    """The workbench (artifacts, cached exports) of these inputs at ``threads`` threads."""
    from detbench.runtimes.workbench import Workbench

    return Workbench.from_options(
        inp.weights, inp.data_yaml, imgsz=inp.imgsz, threads=threads, artifacts=inp.overrides
    )


def load_backends(bench: Any, names: Sequence[str], advance: Callable[[str], None]) -> dict[str, Any]:
    """Export (cached) and load every backend; ``advance(name)`` after each."""
    loaded = {}
    for name in names:
        loaded[name] = bench.load(name)
        advance(name)
    return loaded


def load_references(bench: Any, loaded: Mapping[str, Any]) -> dict[str, Any]:
    """The references the loaded backends are verified against (``runtimes.backends.reference_of``)
    that are not loaded as backends themselves: the model's own end2end forward for an end2end export."""
    from detbench.runtimes.backends import reference_of

    wanted = dict.fromkeys(reference_of(n) for n in loaded)
    return {r: bench.load(r) for r in wanted if r not in loaded}


def describe_rows(loaded: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-backend rows' static part: artifact, size, batch kind, the backend's own description
    (the first fields of ``records.Backend``, by name)."""
    rows = {}
    for name, backend in loaded.items():
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
    return rows


def deviation_inputs(inp: Inputs) -> tuple[np.ndarray, list]:
    """The deviation images as one batch, and their letterbox infos (for detections)."""
    from detbench.data.images import load_image
    from detbench.runtimes.preprocess import preprocess

    images = [load_image(p) for p in inp.val[: min(DEVIATION_IMAGES, len(inp.val))]]
    x, infos = preprocess(images, inp.imgsz)
    return x, list(infos)


def measure_deviation(
    loaded: Mapping[str, Any],
    x: np.ndarray,
    infos: Sequence[Any] = (),
    names: Sequence[str] = (),
    references: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Deviation], list]:
    """Largest differences of each backend from its reference on the same batch, and each backend's
    tolerance-table check on those outputs (for the report's verdict): the raw head against eager
    PyTorch's; an end2end export's detections (no raw head) against the model's own end2end forward's
    (``references``, from ``load_references``), matched as the suite matches them."""
    from detbench.report import verdict
    from detbench.runtimes.backends import reference_of
    from detbench.runtimes.end2end import to_detections
    from detbench.verify.compare import DEVIATION_IOU, detection_deviation, deviation
    from detbench.verify.reference import reference_detections

    refs = {**(references or {}), **loaded}
    ref_out = {r: refs[r].run_batched(x) for r in dict.fromkeys(reference_of(n) for n in loaded)}
    out, checks = {}, []
    for name, backend in loaded.items():
        r = reference_of(name)
        raw = backend.run_batched(x)
        if backend.output == "raw":
            checks.append(verdict.tolerance_check(name, ref_out[r], raw))
            d = deviation(ref_out[r], raw)
        else:
            ref_dets = reference_detections(ref_out[r], infos, names, output=refs[r].output)
            dets = to_detections(raw, infos, names, output=backend.output)
            checks.append(verdict.detections_check(name, ref_dets, dets))
            d = detection_deviation(ref_dets, dets, iou=DEVIATION_IOU)
        out[name] = Deviation(
            images=len(x), max_abs=d.max_abs, box_max_abs=d.box_max_abs, score_max_abs=d.score_max_abs
        )
    return out, checks


def accuracy_checks(
    acc: Mapping[str, Mapping[str, Any]],
    *,
    per_class: bool = True,
    references: Mapping[str, Mapping[str, Any]] | None = None,
) -> list:
    """Each backend's mAP against its reference's (``runtimes.backends.reference_of``: eager
    PyTorch's, or for an end2end export the model's own end2end forward's, in ``references``), with
    its tolerance row's bounds."""
    from detbench.report import verdict
    from detbench.runtimes.backends import reference_of

    scored = {**(references or {}), **acc}
    return [
        verdict.accuracy_check(n, scored[reference_of(n)], a, per_class=per_class)
        for n, a in acc.items()
        if reference_of(n) != n
    ]


def budget_checks(
    loaded: Mapping[str, Any],
    rows: Mapping[str, Mapping[str, Any]],
    weights: Path,
    x1: np.ndarray,
    lat: LatencyResult | None = None,
) -> tuple[list, list[str]]:
    """Size and latency budgets of the budgets file for the backends in this report, judged as the
    tests judge them (each latency ratio on paired block medians of the budgets' plan: the report's
    own latency run ``lat`` when it ran that plan, else a run of its own); plus notes on skipped ones."""
    from detbench.perf.budgets import load_budgets
    from detbench.perf.machine import cpu_flags
    from detbench.perf.measure import measure_latency_budgets
    from detbench.report import verdict
    from detbench.runtimes.backends import REGISTRY
    from detbench.runtimes.cache import artifact_size

    budgets = load_budgets()
    backend_of: dict[str, str] = {}
    for n in loaded:
        if REGISTRY[n].artifact_format:
            backend_of.setdefault(REGISTRY[n].artifact_format, n)  # the plain backend of each format
    sizes = {"checkpoint": artifact_size(weights)}
    sizes.update({fmt: rows[n]["artifact_bytes"] for fmt, n in backend_of.items()})
    runners = {n: (lambda b=b: b.run(x1)) for n, b in loaded.items() if b.dynamic_batch}
    measured, skipped = measure_latency_budgets(budgets, runners, set(cpu_flags()), measured=lat)
    return verdict.size_checks(budgets, sizes, backend_of) + verdict.latency_checks(measured), skipped


def measure_accuracy(
    loaded: Mapping[str, Any],
    inp: Inputs,
    batch: int,
    progress: Callable[[str, int], None],
    *,
    store: AccuracyStore | None = None,
    reuse: bool = True,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """mAP and per-class metrics of every backend on the first ``n_val`` val images, each row with
    its ``source`` ("measured" or "reused") and ``measured_at``; plus notes on unusable records.

    With ``store`` (``verify.accuracy_cache``), a backend whose record for the same artifact, data,
    settings, versions and CPU is there is not scored again (unless ``reuse`` is false), and every
    backend scored is written there for the next run."""
    from detbench.cpuinfo import cpu_flags
    from detbench.verify import accuracy_cache
    from detbench.verify.accuracy import evaluate

    out: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    keys: dict[str, accuracy_cache.AccuracyKey] = {}
    if store is not None:
        scored, ds = inp.val[: inp.n_val], inp.dataset
        common = {
            "batch": batch,
            "imgsz": inp.imgsz,
            "data": accuracy_cache.data_sha256(scored, ds.label_for, ds.names),
            "images": inp.n_val,
            "versions": accuracy_cache.versions(),
            "isa": cpu_flags(),
            "source": accuracy_cache.source_sha256(),
        }
        keys = {name: accuracy_cache.key_for(backend, **common) for name, backend in loaded.items()}
    for name, backend in loaded.items():
        if store is not None and reuse:
            found, problem = store.load(keys[name])
            if problem:
                notes.append(f"{name}: accuracy record ignored and measured again: {problem}")
            if found is not None:
                out[name] = {**found.accuracy.to_dict(), "source": "reused", "measured_at": found.measured_at}
                progress(name, inp.n_val)
                continue
        acc = evaluate(
            backend,
            inp.dataset,
            imgsz=inp.imgsz,
            batch=batch,
            limit=inp.n_val,
            progress=lambda k, name=name: progress(name, k),
        )
        measured_at = datetime.now(UTC).isoformat(timespec="seconds")
        out[name] = {**acc.to_dict(), "source": "measured", "measured_at": measured_at}
        if store is not None:
            try:
                store.save(keys[name], acc, measured_at)
            except OSError as exc:  # a read-only or full cache costs the next run time, not this run
                notes.append(f"{name}: accuracy record not written ({exc})")
    return out, notes


def reused_accuracy_notes(acc: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One note saying which backends' accuracy was reused from an earlier run, and how not to."""
    reused = [row["measured_at"] for row in acc.values() if row.get("source") == "reused"]
    if not reused:
        return []
    days = sorted({when[:10] for when in reused})  # one run spans minutes: its day names it
    return [
        f"accuracy reused for {len(reused)} backend{'s' * (len(reused) != 1)} from "
        f"{'a run' if len(days) == 1 else 'runs'} on {', '.join(days)} (same artifacts, data, "
        "versions, CPU); --remeasure-accuracy to measure again"
    ]


def latency_rows(lat: LatencyResult) -> dict[str, Latency]:
    from detbench.perf.stats import percentiles

    out = {}
    for n, s in lat.samples.items():
        ms = s * 1e3
        out[n] = Latency(
            batch=lat.batch[n],
            rounds=int(ms.size),
            **lat.plan.to_dict(),
            **percentiles(ms),
            mean=float(ms.mean()),
            samples=[round(float(v), 5) for v in ms],  # for ``report --compare``'s gate
        )
    return out


def speedups(lat: LatencyResult) -> dict[str, Speedup]:
    """pytorch / backend per image: the typical ratio of side-by-side block medians (block k of every
    backend ran next to the others', so the pairing cancels drift) and its paired BCa 95% interval."""
    from detbench.perf.stats import paired_ratio_ci
    from detbench.perf.timing import block_medians

    med = {n: block_medians(s / lat.batch[n], lat.plan.blocks) for n, s in lat.samples.items()}
    out = {}
    for n in med:
        ratio, low, high = paired_ratio_ci(med[n], med["pytorch"])
        out[n] = Speedup(ratio=ratio, ci_low=low, ci_high=high, confidence=0.95)
    return out


def thread_counts(threads: int, *, full: bool = True) -> list[int]:
    """The report's thread columns: 1 and all usable cores (and the run's own --threads) with
    ``full``, else the run's own --threads only."""
    from detbench.perf.machine import usable_cpus

    return sorted({1, usable_cpus(), threads}) if full else [threads]


def measure_latency_by_threads(
    inp: Inputs,
    x1: np.ndarray,
    threads: Sequence[int],
    done: Mapping[int, LatencyResult],
    calls: int,
    progress: Callable[[int], None],
) -> dict[str, dict[str, ThreadLatency]]:
    """p50/p90/p99 of every backend at each thread count: {backend: {threads: ...}}. Thread counts
    already in ``done`` reuse those samples; the others load the backends at that count."""
    results = dict(done)
    for t in threads:
        if t not in results:
            loaded = load_backends(workbench(inp, t), inp.names, lambda _name: None)
            results[t] = measure_latency(loaded, x1, calls, lambda _total: None, lambda _k: None)
        progress(t)
    out: dict[str, dict[str, ThreadLatency]] = {n: {} for n in inp.names}
    for t, lat in sorted(results.items()):
        for n, row in latency_rows(lat).items():
            out[n][str(t)] = ThreadLatency(
                p50=row.p50, p90=row.p90, p99=row.p99, rounds=row.rounds, batch=row.batch
            )
    return out


def no_roofline() -> Any:
    """The roofline of a report that measured none (no --full): no runs, the ISA choices still said."""
    from detbench.perf.machine import cpu_flags
    from detbench.perf.peak import Roofline, isa_choice

    return Roofline(sizes=(), repeats=0, runs=[], isa=isa_choice(cpu_flags()))


def measure_peaks(threads: Sequence[int], sizes: Sequence[int], repeats: int, before: Any = None) -> Any:
    """The roofline: GEMM peaks per precision with the runtimes' own kernels (``perf.peak``), merged
    with an earlier pass ``before`` when given."""
    from detbench.perf.peak import measure_roofline

    roofline = measure_roofline(threads, sizes=sizes, repeats=repeats)
    return roofline if before is None else before.merged(roofline)


def peak_summary(roofline: Any, threads: int) -> Peak:
    """report.json's ``peak``: the fp32 peak at ``threads`` under the old keys, plus every precision."""
    fp32 = roofline.peak("fp32", threads)
    candidates: dict[str, float | None] = {}
    for r in roofline.runs:
        if r.threads == threads:
            key = f"{r.runtime} {r.precision} @{r.threads}"
            candidates[key] = max(filter(None, (candidates.get(key), r.gflops_per_s)), default=None)
    peaks: dict[str, dict[str, float | None]] = {}
    for r in roofline.runs:
        best = roofline.peak(r.precision, r.threads)
        peaks.setdefault(r.precision, {})[str(r.threads)] = best.gflops_per_s if best else None
    return Peak(
        n=fp32.n if fp32 else None,  # the size of the fp32 peak's GEMM
        sizes=list(roofline.sizes),
        threads=threads,
        repeats=roofline.repeats,
        best_s=fp32.best_s if fp32 else None,
        gflops_per_s=fp32.gflops_per_s if fp32 else None,
        library=f"{fp32.runtime} fp32 MatMul" if fp32 else None,
        candidates=candidates,
        peaks=peaks,
        isa=from_json(Isa, roofline.isa),
        runs=list(roofline.runs),
    )


def efficiency(
    latency: Mapping[str, Latency],
    images_per_s: Mapping[str, float | None],
    gflops: float | None,
    roofline: Any,
    threads: int,
) -> dict[str, Efficiency]:
    """Achieved GFLOP/s at batch 1 and N (``images_per_s`` at N), and each as a share of its own
    precision's peak."""
    from detbench.perf.peak import precision_of, share

    out = {}
    for n, lat in latency.items():
        per_img_s = lat.p50 / 1e3 / lat.batch
        g1 = gflops / per_img_s if gflops else None
        ips = images_per_s[n]
        gn = gflops * ips if gflops and ips else None
        peak = roofline.peak(precision_of(n), threads)
        out[n] = Efficiency(
            precision=precision_of(n),
            peak_gflops_per_s=peak.gflops_per_s if peak else None,
            peak_runtime=peak.runtime if peak else None,
            gflops_per_s_batch1=g1,
            gflops_per_s_batchN=gn,
            peak_fraction_batch1=share(g1, roofline, n, threads),
            peak_fraction_batchN=share(gn, roofline, n, threads),
        )
    return out


def load_tune(path: Path | None) -> dict[str, Any] | None:
    """The ``recommended`` entry of a ``detbench tune`` result (tune.json), or None."""
    if path is None or not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text()).get("recommended")
    except (OSError, ValueError, AttributeError):
        return None
    return rec if isinstance(rec, dict) and rec.get("backend") else None


def load_training(weights: Path) -> dict[str, Any]:
    """The baseline's training record (``metrics.json`` written by ``detbench train``) next to the weights."""
    from detbench.model.train import METRICS_FILE

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
    return {
        "source": str(path),
        "matches_weights": matches,
        "epochs": epochs,
        "final": doc.get("final"),
        "per_class": doc.get("per_class"),
        "note": "; ".join(notes),
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
            run = benchjson.load(f, raw=False)
        except HistoryError as exc:
            skipped.append(f"{f}: not a readable pytest-benchmark run ({exc.reason})")
            continue
        medians = {b.fullname: b.median * 1e3 for b in run.benchmarks}
        saved = run.datetime or datetime.fromtimestamp(f.stat().st_mtime, UTC).isoformat()
        runs.append({"file": str(f), "datetime": str(saved), "medians_ms": medians})
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
