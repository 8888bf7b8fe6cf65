"""The pipeline search: decode x preprocess x postprocess variants on the fastest verified backend
configurations, objective the end-to-end p50 per image on the photo-sized set.

Admission: a pipeline whose every stage claims the reference's output gives the reference pipeline's
detections (``tests/test_pipeline.py`` and ``tests/test_decode.py`` hold each claim bit for bit), so it
is admitted without a check. One with a non-identical stage (a reduced decode) is admitted only if its
detections on the photos, through the same backend, match the reference pipeline's within that stage's
tolerance row (``verify.decode.DECODE_TOLERANCES``), checked here in this run; a refused pipeline is
never timed or recommended. For a reduced decode that row's detection bounds only catch gross breakage:
its contract is mAP within the INT8 bounds, held by ``tests/test_decode.py`` on the labelled photo set
and not re-measured here. Every admitted pipeline is then timed in one alternated run
(``perf.timing``), one call = one pass over the photos, beside each configuration's backend alone on
the same photos' model inputs (the inference-only column).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from detbench.runtimes import pipeline as stages
from detbench.runtimes.backends import BaseBackend
from detbench.runtimes.pipeline import BackendConfig, Pipeline
from detbench.runtimes.postprocess import Detections
from detbench.verify.compare import OutputMismatch, Tolerance, assert_detections_match
from detbench.verify.decode import DECODE_TOLERANCES

if TYPE_CHECKING:
    from detbench.tune.records import RecommendedPipeline

# The searched variants (kept small: one reduced decode, the faster of the two in
# scripts/measure_decode.py's table, is enough to show what a reduced decode buys).
DECODE = ("pillow", "opencv", "opencv-reduced")
PREPROCESS = ("reference", "lean")
POSTPROCESS = ("ultralytics", "numpy")
TOP_CONFIGS = 2

Sampler = Callable[[Sequence[Callable[[], object]]], list[np.ndarray]]  # fns -> seconds per call each
Runner = Callable[[str | os.PathLike], Detections]
MakeRunner = Callable[[Pipeline, BaseBackend], Runner]


@dataclass(frozen=True)
class Config:
    """A verified backend configuration the pipelines run on: its index in tune.json's candidates."""

    index: int
    label: str
    spec: BackendConfig
    backend: BaseBackend


@dataclass(frozen=True)
class Space:
    decode: tuple[str, ...] = DECODE
    preprocess: tuple[str, ...] = PREPROCESS
    postprocess: tuple[str, ...] = POSTPROCESS


def top_configs(candidates: Sequence[Mapping[str, Any]], k: int = TOP_CONFIGS) -> list[int]:
    """Indices of the ``k`` verified, timed candidates with the lowest inference p50 (ties: search
    order), plus the fastest NMS-free one (end2end detections) if it is not among them: p50 is
    inference only, and what it saves, NMS, shows only end to end."""
    from detbench.runtimes.backends import REGISTRY

    timed = [i for i, c in enumerate(candidates) if c["verified"] and c["p50_ms"] is not None]
    ranked = sorted(timed, key=lambda i: (candidates[i]["p50_ms"], i))
    nms_free = [i for i in ranked if REGISTRY[candidates[i]["backend"]].output == "detections"]
    return ranked[:k] + [i for i in nms_free[:1] if i not in ranked[:k]]


def pipeline_space(configs: Sequence[Config], space: Space = Space()) -> list[tuple[Config, Pipeline]]:
    """Every configuration x decode x preprocess x postprocess, in that nesting order."""
    return [
        (c, Pipeline(c.spec, d, pre, post))
        for c in configs
        for d in space.decode
        for pre in space.preprocess
        for post in space.postprocess
    ]


def tolerance(p: Pipeline, rows: Mapping[str, Tolerance] = DECODE_TOLERANCES) -> Tolerance | None:
    """The bound a non-identical pipeline is checked against: its decode's row; None when a
    non-identical stage has no row (then it cannot be admitted)."""
    odd = [(s, n) for s, n in zip(stages.STAGES, p.stages) if not stages.get(s, n).identical]
    if any(s != "decode" for s, _ in odd):
        return None
    return rows.get(p.decode)


def default_runner(p: Pipeline, backend: BaseBackend) -> Runner:
    return p.load(backend)


def admit(
    points: Sequence[tuple[Config, Pipeline]],
    images: Sequence[str | os.PathLike],
    *,
    make: MakeRunner = default_runner,
    rows: Mapping[str, Tolerance] = DECODE_TOLERANCES,
) -> list[str | None]:
    """Per point, None when admitted, else why not: identical pipelines pass as claimed; the others'
    detections on ``images`` must match the reference pipeline's on the same backend within the row."""
    refs: dict[int, list[Detections]] = {}
    reasons: list[str | None] = []
    for cfg, p in points:
        if p.identical:
            reasons.append(None)
            continue
        tol = tolerance(p, rows)
        if tol is None:
            reasons.append(f"no tolerance row for {p.label}: a non-identical stage cannot be checked")
            continue
        if cfg.index not in refs:
            ref = make(p.reference(), cfg.backend)
            refs[cfg.index] = [ref(path) for path in images]
        run = make(p, cfg.backend)
        try:
            assert_detections_match(refs[cfg.index], [run(path) for path in images], tol, label=p.label)
        except OutputMismatch as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            reasons.append(f"out of bounds vs the reference pipeline: {' / '.join(lines[:3])[:400]}")
            continue
        reasons.append(None)
    return reasons


@dataclass
class Timed:
    e2e: list[np.ndarray | None]  # per point: seconds per image per pass; None when not admitted
    inference: dict[int, np.ndarray]  # config index -> its backend alone, seconds per image per pass


def time_admitted(
    points: Sequence[tuple[Config, Pipeline]],
    reasons: Sequence[str | None],
    images: Sequence[str | os.PathLike],
    sampler: Sampler,
    *,
    make: MakeRunner = default_runner,
) -> Timed:
    """Admitted pipelines and each configuration's backend alone, all in one ``sampler`` run."""
    n = len(images)
    keep = [i for i, r in enumerate(reasons) if r is None]
    fns: list[Callable[[], object]] = []
    for i in keep:
        cfg, p = points[i]
        run = make(p, cfg.backend)
        fns.append(lambda run=run: [run(path) for path in images])
    configs = {cfg.index: cfg for cfg, _ in points}
    for cfg in configs.values():
        xs = _reference_inputs(cfg, images)
        fns.append(lambda b=cfg.backend, xs=xs: [b.run(x) for x in xs])
    samples = sampler(fns) if fns else []
    e2e: list[np.ndarray | None] = [None] * len(points)
    for i, sec in zip(keep, samples):
        e2e[i] = np.asarray(sec) / n
    inference = {idx: np.asarray(sec) / n for idx, sec in zip(configs, samples[len(keep) :])}
    return Timed(e2e, inference)


def _reference_inputs(cfg: Config, images: Sequence[str | os.PathLike]) -> list[np.ndarray]:
    """The model inputs the reference pipeline feeds the backend for each photo (copied: lean reuses)."""
    decode = stages.reference("decode").make()
    pre = stages.reference("preprocess").make()
    return [np.array(pre(decode(path, cfg.spec.imgsz).rgb, cfg.spec.imgsz)[0]) for path in images]


def _ms(sec: np.ndarray | None, q: float) -> float | None:
    return None if sec is None else float(np.percentile(sec, q) * 1e3)


def rows(
    points: Sequence[tuple[Config, Pipeline]], reasons: Sequence[str | None], timed: Timed
) -> list[dict]:
    """tune.json's pipeline rows (records.PipelineRow), in search order."""
    out = []
    for (cfg, p), reason, sec in zip(points, reasons, timed.e2e):
        out.append(
            {
                "config": cfg.index,
                "label": f"{cfg.label} {p.label}",
                "decode": p.decode,
                "preprocess": p.preprocess,
                "postprocess": p.postprocess,
                "identical": p.identical,
                "admitted": reason is None,
                "reason": reason,
                "e2e_p50_ms": _ms(sec, 50),
                "e2e_p99_ms": _ms(sec, 99),
                "inference_p50_ms": _ms(timed.inference.get(cfg.index), 50),
            }
        )
    return out


def recommend(pipeline_rows: Sequence[Mapping[str, Any]]) -> int | None:
    """The admitted, timed row with the lowest end-to-end p50 (ties: search order); None when none."""
    timed = [i for i, r in enumerate(pipeline_rows) if r["admitted"] and r["e2e_p50_ms"] is not None]
    return min(timed, key=lambda i: (pipeline_rows[i]["e2e_p50_ms"], i), default=None)


def recommended_doc(
    pipeline_rows: Sequence[Mapping[str, Any]], best: int, configs: Sequence[Config]
) -> dict[str, Any]:
    """records.RecommendedPipeline of row ``best``, with the reference pipeline's p50 on its configuration."""
    r = pipeline_rows[best]
    spec = next(c.spec for c in configs if c.index == r["config"])
    ref = [
        x["e2e_p50_ms"]
        for x in pipeline_rows
        if x["config"] == r["config"]
        and (x["decode"], x["preprocess"], x["postprocess"]) == Pipeline(spec).stages
    ]
    return {
        "index": best,
        "backend": spec.backend,
        "threads": spec.threads,
        "artifact": str(spec.artifact),
        "imgsz": spec.imgsz,
        "names": list(spec.names),
        "decode": r["decode"],
        "preprocess": r["preprocess"],
        "postprocess": r["postprocess"],
        "e2e_p50_ms": r["e2e_p50_ms"],
        "inference_p50_ms": r["inference_p50_ms"],
        "reference_e2e_p50_ms": ref[0] if ref else None,
    }


def search(
    configs: Sequence[Config],
    images: Sequence[str | os.PathLike],
    sampler: Sampler,
    *,
    space: Space = Space(),
    make: MakeRunner = default_runner,
    tolerances: Mapping[str, Tolerance] = DECODE_TOLERANCES,
) -> tuple[list[dict], dict[str, Any] | None]:
    """Admit, time, rank: (the pipeline rows, the recommended pipeline or None)."""
    points = pipeline_space(configs, space)
    reasons = admit(points, images, make=make, rows=tolerances)
    timed = time_admitted(points, reasons, images, sampler, make=make)
    out = rows(points, reasons, timed)
    best = recommend(out)
    return out, None if best is None else recommended_doc(out, best, configs)


# -- tune.json -> a pipeline ---------------------------------------------------------------------------

WHICH = ("recommended", "reference")


def read_recommended(path: str | os.PathLike) -> RecommendedPipeline:
    """tune.json's ``recommended_pipeline`` record; a file that cannot be read, is not a tune.json of
    this schema or recommends no pipeline is a ``DetbenchError`` naming the file."""
    import json
    from pathlib import Path

    from detbench.errors import DetbenchError
    from detbench.schema import from_json
    from detbench.tune.records import SCHEMA, RecommendedPipeline

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DetbenchError(f"{path}: cannot read tune.json: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise DetbenchError(
            f"{path}: not a tune.json of schema {SCHEMA} (found {found!r}); rerun `detbench tune`"
        )
    if doc.get("recommended_pipeline") is None:
        raise DetbenchError(f"{path}: no recommended pipeline (see its notes); rerun `detbench tune`")
    try:
        return from_json(RecommendedPipeline, doc["recommended_pipeline"])
    except ValueError as exc:  # a missing or unexpected key
        raise DetbenchError(f"{path}: recommended_pipeline: {exc}") from None


def pipeline_from_tune(path: str | os.PathLike, which: str = "recommended") -> Pipeline:
    """tune.json's recommended pipeline (``which="recommended"``), or the reference stages on the same
    backend configuration (``"reference"``). The artifact is the one searched; when it is gone (tune.json
    moved to another machine) the copy ``detbench tune`` wrote beside tune.json, ``recommended/<name>``."""
    from pathlib import Path

    from detbench.errors import DetbenchError

    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    path = Path(path)
    rec = read_recommended(path)
    artifact = Path(rec.artifact)
    if not artifact.exists():
        beside = path.parent / "recommended" / artifact.name
        if not beside.exists():
            raise DetbenchError(f"{path}: the recommended pipeline's artifact {artifact} is missing")
        artifact = beside
    config = BackendConfig(rec.backend, rec.threads, artifact, rec.imgsz, tuple(rec.names))
    try:
        if which == "reference":
            return Pipeline(config)
        return Pipeline(config, rec.decode, rec.preprocess, rec.postprocess)
    except ValueError as exc:  # a variant this detbench does not register
        raise DetbenchError(f"{path}: {exc}") from None


def pipeline_for_script(path: str | os.PathLike, decode: str | None, option: str) -> Pipeline:
    """A script's ``--tune-json``: tune.json's recommended pipeline (:func:`pipeline_from_tune`), which
    decides the decode variant, so the script's own decode option ``option`` given as well (``decode``
    not None) is a ``DetbenchError`` naming it, raised before tune.json is read."""
    from detbench.errors import DetbenchError

    if decode is not None:
        raise DetbenchError(
            f"{option}: with --tune-json detbench runs the decode variant tune.json recommends"
        )
    return pipeline_from_tune(path)
