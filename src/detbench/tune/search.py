"""The search: for every point of the space, load, VERIFY with the suite's own comparators, then
TIME only what verified, all in one steady-state run; pick the fastest verified configuration.

Verification is exactly what the test suite asserts for a backend (``verify.compare``): the raw
head within the backend's ``TOLERANCES`` row on real val images at the deployment batch, the
detections after NMS matched by IoU, and mAP50 / mAP50-95 / per-class mAP50 through
``verify.accuracy.evaluate`` within the row's bounds. A backend whose output is end2end detections
(no raw head, no NMS) is held to the same detection and accuracy checks against its own reference,
the model's own end2end forward (``runtimes.backends.reference_of``). A point that fails any of
them is kept in the results with the comparator's message as its ``reason`` and is never timed or
recommended. Each timed call is the backend's inference (an end2end export's in-graph ranking
included), as the suite's latency benchmark and the budget tune writes time it; the pipeline search
below times each configuration with its own postprocess (NMS, or none after end2end detections), so
an NMS-free configuration is compared end to end on what a deployment pays.

Then the pipeline search (``tune.pipelines``): decode x preprocess x postprocess variants on the
fastest verified configurations, checked and timed end to end on the photo-sized set.

mAP is scored once per artifact (at its first thread count): threads change only the order of
fp32 sums, which the raw-head check, run at every thread count, bounds far below what moves a
detection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detbench._fs import sha256_file
from detbench.errors import DetbenchError
from detbench.perf.peak import precision_of
from detbench.perf.timing import BlockPlan
from detbench.runtimes.backends import BackendSettings, BaseBackend
from detbench.runtimes.cache import artifact_size
from detbench.schema import from_json
from detbench.tune import pipelines
from detbench.tune.pareto import pareto_front, recommend
from detbench.tune.records import (
    SCHEMA,
    Environment,
    PhotoSet,
    PipelineRow,
    Recommended,
    RecommendedPipeline,
    Reference,
    SearchSettings,
    Tune,
)
from detbench.tune.records import Candidate as CandidateRecord
from detbench.tune.space import Point

REFERENCE = "pytorch"  # eager PyTorch on the weights, 1 thread: what every candidate must reproduce

Progress = Callable[[str, int, int], None]  # (phase, advance, total) -> None


@dataclass(frozen=True)
class TuneSettings:
    weights: Path | None = None
    data: Path | None = None
    imgsz: int | None = None
    points: tuple[Point, ...] = ()
    overrides: Mapping[str, Path] = field(default_factory=dict)
    val_images: int | None = None  # None: the whole val split
    verify_images: int = 16  # raw-head / detection comparison inputs
    plan: BlockPlan = BlockPlan.TUNE
    accuracy: bool = True  # False: latency only (untrained weights have no meaningful mAP)
    cold: str = "all"  # all | front | none: which candidates get a fresh-process cold start
    pipeline_search: bool = True  # search pipeline variants on the fastest verified configurations
    pipeline_plan: BlockPlan = BlockPlan.PIPELINES
    top_configs: int = pipelines.TOP_CONFIGS
    photos_per_size: int = 2  # photos of each data.photos size the pipelines are checked and timed on


@dataclass
class Candidate:
    point: Point
    precision: str
    artifact: Path | None = None
    size_mb: float | None = None
    verified: bool = False
    reason: str | None = None
    deviation: dict[str, float] | None = None
    accuracy: dict[str, Any] | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    first_call_ms: float | None = None
    peak_rss_mb: float | None = None
    base_rss_mb: float | None = None
    backend: BaseBackend | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        acc = self.accuracy or {}
        return {
            "backend": self.point.backend,
            "precision": self.precision,
            "threads": self.point.threads,
            "batch": self.point.batch,
            "dynamic_batch": self.point.dynamic_batch,
            "label": self.point.label,
            "artifact": None if self.artifact is None else str(self.artifact),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "first_call_ms": self.first_call_ms,
            "peak_rss_mb": self.peak_rss_mb,
            "base_rss_mb": self.base_rss_mb,
            "size_mb": self.size_mb,
            "mAP50": acc.get("mAP50"),
            "mAP50-95": acc.get("mAP50-95"),
            "per_class_mAP50": {k: v["mAP50"] for k, v in (acc.get("per_class") or {}).items()} or None,
            "deviation": self.deviation,
            "verified": self.verified,
            "reason": self.reason,
        }


@dataclass
class Context:
    """What every step needs, built once: workbenches per batch layout, the dataset, the
    verification inputs and the reference's outputs on them."""

    imgsz: int
    names: tuple[str, ...]
    weights: Path
    benches: dict[bool, Any]  # dynamic_batch -> Workbench
    dataset: Any
    x: np.ndarray  # (verify_images, 3, H, W)
    infos: list
    ref_raw: np.ndarray
    ref_dets: list
    ref_accuracy: dict[str, Any] | None
    x1: np.ndarray  # the one timed input, batch 1
    # Other references (an end2end export's), loaded and scored when a point first needs one.
    others: dict[str, RefOutputs] = field(default_factory=dict)
    model_reasons: dict[str, str | None] = field(default_factory=dict)  # backend -> model_unavailable


@dataclass(frozen=True)
class RefOutputs:
    """One reference's outputs on the verification inputs: its raw output, detections, accuracy."""

    out: np.ndarray
    dets: list
    accuracy: dict[str, Any] | None


# -- steps ---------------------------------------------------------------------------------------


def prepare(s: TuneSettings) -> Context:
    """Resolve weights, data and the reference; export nothing yet (each point exports lazily)."""
    from detbench.data.datasets import load_dataset
    from detbench.model.baseline import synthetic_dataset
    from detbench.runtimes.export import ExportSettings
    from detbench.runtimes.postprocess import postprocess
    from detbench.runtimes.preprocess import preprocess
    from detbench.runtimes.workbench import Workbench
    from detbench.verify.accuracy import evaluate

    benches = {
        dyn: Workbench.from_options(
            s.weights, s.data, imgsz=s.imgsz, artifacts=s.overrides, export=ExportSettings(dynamic_batch=dyn)
        )
        for dyn in (True, False)
    }
    weights, imgsz, names = benches[True].weights, benches[True].imgsz, benches[True].names
    ds = load_dataset(s.data or synthetic_dataset())
    val = ds.images("val")
    if not val:
        raise DetbenchError(f"{ds.yaml_path}: the val split has no images to verify against")
    ref = benches[True].load(REFERENCE, BackendSettings(threads=1))
    x, infos = preprocess(val[: s.verify_images], imgsz)
    ref_raw = ref.run_batched(x, 1)
    ref_acc = evaluate(ref, ds, imgsz=imgsz, limit=s.val_images).to_dict() if s.accuracy else None
    return Context(
        imgsz=imgsz,
        names=tuple(names),
        weights=weights,
        benches=benches,
        dataset=ds,
        x=x,
        infos=list(infos),
        ref_raw=ref_raw,
        ref_dets=postprocess(ref_raw, infos, names),
        ref_accuracy=ref_acc,
        x1=np.ascontiguousarray(x[:1]),
    )


def load(ctx: Context, cand: Candidate) -> None:
    """Export (cached) and load the point's artifact; a failure becomes the candidate's reason."""
    from detbench.runtimes.backends import REGISTRY

    p = cand.point
    from detbench.verify.compare import TOLERANCES

    if reason := REGISTRY[p.backend].unavailable():
        cand.reason = f"unavailable here: {reason}"
        return
    if p.backend not in ctx.model_reasons:
        ctx.model_reasons[p.backend] = REGISTRY[p.backend].model_unavailable(ctx.weights)
    if reason := ctx.model_reasons[p.backend]:
        cand.reason = f"no artifact for these weights: {reason}"
        return
    if p.backend not in TOLERANCES:  # checked before loading: torch.compile alone costs ~40 s
        cand.reason = f"no tolerance row for {p.backend} in verify.compare.TOLERANCES: cannot verify it"
        return
    bench = ctx.benches[p.dynamic_batch]
    try:
        cand.artifact = bench.artifact(p.backend)
        cand.size_mb = artifact_size(cand.artifact) / 1e6
        cand.backend = bench.load(p.backend, BackendSettings(threads=p.threads))
    except (DetbenchError, OSError, ValueError, RuntimeError, ModuleNotFoundError) as exc:
        cand.reason = f"not loaded: {type(exc).__name__}: {_first_lines(str(exc))}"


def reference(ctx: Context, name: str) -> RefOutputs:
    """The outputs of reference ``name`` (``runtimes.backends.reference_of``), at 1 thread like
    ``REFERENCE``'s: ``REFERENCE``'s from ``prepare``, another's loaded and scored on first use."""
    from detbench.verify.accuracy import evaluate
    from detbench.verify.reference import reference_detections

    if name == REFERENCE:
        return RefOutputs(ctx.ref_raw, ctx.ref_dets, ctx.ref_accuracy)
    if name not in ctx.others:
        ref = ctx.benches[True].load(name, BackendSettings(threads=1))
        out = ref.run_batched(ctx.x, 1)
        acc = None
        if ctx.ref_accuracy is not None:
            acc = evaluate(ref, ctx.dataset, imgsz=ctx.imgsz, limit=_limit(ctx)).to_dict()
        dets = reference_detections(out, ctx.infos, ctx.names, output=ref.output)
        ctx.others[name] = RefOutputs(out, dets, acc)
    return ctx.others[name]


def verify(ctx: Context, cand: Candidate, accuracy_cache: dict[Path, dict[str, Any]]) -> None:
    """The suite's three comparators, in order of cost; sets ``verified`` or ``reason``. A backend
    without a raw head (end2end) skips the first: its detections and mAP are checked against its
    own reference's, and its deviation is over the matched detections."""
    from detbench.runtimes.backends import reference_of
    from detbench.runtimes.end2end import to_detections
    from detbench.verify.accuracy import evaluate
    from detbench.verify.compare import (
        DEVIATION_IOU,
        TOLERANCES,
        OutputMismatch,
        assert_accuracy_close,
        assert_detections_match,
        assert_outputs_close,
        detection_deviation,
    )

    backend, p = cand.backend, cand.point
    assert backend is not None and cand.artifact is not None
    tol = TOLERANCES[p.backend]
    label = p.label
    try:
        ref = reference(ctx, reference_of(p.backend))
        raw = backend.run_batched(ctx.x, p.batch)
        dets = to_detections(raw, ctx.infos, ctx.names, output=backend.output)
        if backend.output == "raw":
            dev = assert_outputs_close(ref.out, raw, tol, label=label)
            cand.deviation = {"box_max_abs": dev.box_max_abs, "score_max_abs": dev.score_max_abs}
        else:
            d = detection_deviation(ref.dets, dets, iou=DEVIATION_IOU)
            cand.deviation = {"box_max_abs": d.box_max_abs, "score_max_abs": d.score_max_abs}
        assert_detections_match(ref.dets, dets, tol, label=label)
        if ref.accuracy is not None:
            key = cand.artifact
            if key not in accuracy_cache:
                accuracy_cache[key] = evaluate(
                    backend, ctx.dataset, imgsz=ctx.imgsz, batch=8, limit=_limit(ctx)
                ).to_dict()
            cand.accuracy = accuracy_cache[key]
            assert_accuracy_close(ref.accuracy, cand.accuracy, tol, label=label)
    except OutputMismatch as exc:
        cand.reason = f"failed verification: {_first_lines(str(exc), 3)}"
        return
    cand.verified = True


def _limit(ctx: Context) -> int:
    assert ctx.ref_accuracy is not None
    return int(ctx.ref_accuracy["images"])


def _call(backend: BaseBackend, x: np.ndarray) -> Callable[[], object]:
    """A zero-argument call of ``backend.run(x)``; torch backends re-apply their own thread count
    themselves (runtimes.backends._use_threads). Inference only, as the suite's latency benchmark
    and the budget tune writes time it; an end2end export's in-graph ranking is part of its call,
    and each configuration's own postprocess is timed end to end by the pipeline search."""
    return lambda: backend.run(x)


def time_verified(
    ctx: Context, cands: Sequence[Candidate], s: TuneSettings, on_block: Callable[[int], object] | None = None
) -> None:
    """All verified candidates in one steady-state run, blocks alternated: drift hits all alike."""
    timed = [c for c in cands if c.verified and c.backend is not None]
    if not timed:
        return
    fns = [_call(c.backend, ctx.x1) for c in timed]  # type: ignore[arg-type]
    samples = s.plan.steady_state(fns, on_block=on_block)
    for c, sec in zip(timed, samples):
        c.p50_ms = float(np.percentile(sec, 50) * 1e3)
        c.p99_ms = float(np.percentile(sec, 99) * 1e3)


def search_pipelines(
    ctx: Context, cands: Sequence[Candidate], s: TuneSettings, progress: Progress
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any] | None]:
    """The pipeline search (``tune.pipelines``) on the ``s.top_configs`` fastest verified candidates,
    whose backends are still loaded: (the photo set, the pipeline rows, the recommended pipeline)."""
    from detbench.data.datasets import load_dataset
    from detbench.data.photos import PhotoConfig, photo_dataset
    from detbench.runtimes.pipeline import BackendConfig

    top = pipelines.top_configs([c.to_dict() for c in cands], s.top_configs)
    configs = [
        pipelines.Config(
            i,
            cands[i].point.label,
            BackendConfig(
                cands[i].point.backend, cands[i].point.threads, cands[i].artifact, ctx.imgsz, ctx.names
            ),
            cands[i].backend,
        )
        for i in top
        if cands[i].backend is not None and cands[i].artifact is not None
    ]
    if not configs:
        return None, [], None
    data = photo_dataset(PhotoConfig(per_size=s.photos_per_size))
    images = load_dataset(data).images("val")

    def sampler(fns: Sequence[Callable[[], object]]) -> list[np.ndarray]:
        total = len(fns) * s.pipeline_plan.kept
        return s.pipeline_plan.steady_state(fns, on_block=lambda k: progress("pipelines", k, total))

    rows, rec = pipelines.search(configs, images, sampler)
    photos = {"data": str(data), "images": [p.name for p in images], "plan": s.pipeline_plan.to_dict()}
    return photos, rows, rec


def measure_cold(ctx: Context, cand: Candidate, notes: list[str]) -> None:
    from detbench.perf.firstcall import first_call

    assert cand.artifact is not None
    try:
        cs = first_call(cand.point.backend, cand.artifact, threads=cand.point.threads, imgsz=ctx.imgsz)
    except (RuntimeError, OSError, ValueError) as exc:
        notes.append(f"{cand.point.label}: no cold start ({_first_lines(str(exc))})")
        return
    cand.first_call_ms, cand.peak_rss_mb, cand.base_rss_mb = cs.first_call_ms, cs.peak_rss_mb, cs.base_rss_mb


def _first_lines(text: str, n: int = 1) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " / ".join(lines[:n])[:400]


# -- the orchestrator ----------------------------------------------------------------------------


@dataclass
class TuneResult:
    doc: dict[str, Any]  # what tune.json holds: the search's records.Tune as JSON
    candidates: list[Candidate]
    recommended: Candidate | None


def run_search(s: TuneSettings, progress: Progress | None = None) -> TuneResult:
    """Prepare, then load + verify every point, time the verified ones, cold-start, rank."""
    tick = progress or (lambda phase, advance, total: None)
    t0 = time.perf_counter()
    steps: dict[str, float] = {}
    notes: list[str] = []

    ctx = prepare(s)
    steps["prepare_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    cands = [Candidate(p, precision_of(p.backend)) for p in s.points]
    acc_cache: dict[Path, dict[str, Any]] = {}
    for c in cands:
        load(ctx, c)
        if c.backend is not None:
            verify(ctx, c, acc_cache)
            if not c.verified:
                c.backend = None  # free it: it will not be timed
        tick("verify", 1, len(cands))
    steps["verify_s"] = time.perf_counter() - t

    t = time.perf_counter()
    n_timed = sum(c.verified for c in cands)
    total = n_timed * s.plan.kept
    time_verified(ctx, cands, s, on_block=lambda k: tick("time", k, total))
    steps["time_s"] = time.perf_counter() - t

    t = time.perf_counter()
    photos, pipeline_rows, rec_pipeline = None, [], None
    if s.pipeline_search:
        photos, pipeline_rows, rec_pipeline = search_pipelines(ctx, cands, s, tick)
        if rec_pipeline is None:
            notes.append("pipeline search: no admitted pipeline was timed; nothing recommended")
    else:
        notes.append("pipeline search skipped (--no-pipelines)")
    steps["pipelines_s"] = time.perf_counter() - t
    for c in cands:
        c.backend = None

    dicts = [c.to_dict() for c in cands]
    front = pareto_front(dicts)
    t = time.perf_counter()
    cold = [i for i, c in enumerate(cands) if c.verified]
    if s.cold == "front":
        cold = [i for i in cold if i in front]
        notes.append("--quick: cold start (first_call_ms, peak_rss_mb) measured for the Pareto front only")
    elif s.cold == "none":
        cold = []
    for i in cold:
        measure_cold(ctx, cands[i], notes)
        tick("cold", 1, len(cold))
    steps["cold_s"] = time.perf_counter() - t

    dicts = [c.to_dict() for c in cands]
    for i, d in enumerate(dicts):
        d["pareto"] = i in front
    best = recommend(dicts)
    if best is None:
        notes.append("no candidate verified: nothing to recommend")
    if not s.accuracy:
        notes.append("latency only: mAP not scored (untrained weights); verified = raw head + detections")
    for name, r in ctx.others.items():  # the tune.json reference is REFERENCE's; say what else was one
        acc = (
            ""
            if r.accuracy is None
            else f" (mAP50 {r.accuracy['mAP50']:.4f}, mAP50-95 {r.accuracy['mAP50-95']:.4f})"
        )
        notes.append(f"end2end candidates verified against {name}, the model's own end2end forward{acc}")
    tune = Tune(
        schema=SCHEMA,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        settings=from_json(SearchSettings, _settings_doc(s, ctx)),
        environment=from_json(Environment, _environment()),
        reference=from_json(
            Reference, {"backend": REFERENCE, "threads": 1, "accuracy": _acc_summary(ctx.ref_accuracy)}
        ),
        candidates=[from_json(CandidateRecord, d) for d in dicts],
        pareto=front,
        recommended=None if best is None else from_json(Recommended, {"index": best, **dicts[best]}),
        photos=None if photos is None else from_json(PhotoSet, photos),
        pipelines=[from_json(PipelineRow, r) for r in pipeline_rows],
        recommended_pipeline=None if rec_pipeline is None else from_json(RecommendedPipeline, rec_pipeline),
        notes=notes,
        step_s=steps,
        duration_s=time.perf_counter() - t0,
    )
    return TuneResult(tune.to_json(), cands, None if best is None else cands[best])


def _acc_summary(acc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if acc is None:
        return None
    return {k: acc[k] for k in ("mAP50", "mAP50-95", "images")}


def _settings_doc(s: TuneSettings, ctx: Context) -> dict[str, Any]:
    return {
        "weights": str(ctx.weights),
        "weights_sha256": sha256_file(ctx.weights),
        "data": str(ctx.dataset.yaml_path),
        "imgsz": ctx.imgsz,
        "val_images": None if ctx.ref_accuracy is None else ctx.ref_accuracy["images"],
        "verify_images": int(ctx.x.shape[0]),
        **s.plan.to_dict(),
        "accuracy": s.accuracy,
        "overrides": {k: str(v) for k, v in s.overrides.items()},
        "points": len(s.points),
    }


def _environment() -> dict[str, Any]:
    import platform

    from detbench.perf.machine import cpu_flags, cpu_model, machine_id, usable_cpus
    from detbench.runtimes.export import toolchain_versions

    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "machine_id": machine_id(),
        "usable_cores": usable_cpus(),
        "platform": platform.platform(),
        "versions": toolchain_versions(),
    }
