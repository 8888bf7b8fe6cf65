"""``detbench report``: size, latency, throughput, accuracy and efficiency of every backend, in one run.

With no arguments it scores the committed baseline on the synthetic dataset through every backend
(exports are cached). Latency is each backend's steady state (``timing.steady_state``: blocks of
consecutive calls per backend, the blocks alternated A B C C B A ...), so a neighbour's job or thermal
drift hits every backend alike and the speedup ratios stay fair.
Eager PyTorch is always measured: it is the reference for speedups and output deviations.

Outputs in ``--out``: ``report.json``, ``report.md``, PNG plots; a table on the terminal.

report.json is ``report.records.Report``: its keys, JSON types and meanings are listed in
``docs/schemas.md``, generated from those records (``scripts/write_schemas.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detbench import paths
from detbench._fs import sha256_file
from detbench.perf import measure
from detbench.perf.machine import environment, git_commit
from detbench.report import steps, verdict
from detbench.report.records import (
    SCHEMA,
    Accuracy,
    Backend,
    Environment,
    FirstCall,
    History,
    Model,
    Plots,
    Report,
    Settings,
    Stages,
    Throughput,
    Training,
    Verdict,
)
from detbench.report.render import render_markdown, write_report
from detbench.report.steps import DEVIATION_IMAGES, STAGE_IMAGES, collect_history, load_training
from detbench.schema import from_json


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
    matmul_sizes: tuple[int, ...]
    matmul_repeats: int
    default_backends: bool  # the user did not choose: an absent optional runtime is skipped, not fatal
    # --tune-json: a detbench tune result, its recommended row marked and its recommended pipeline's
    # variants timed beside the reference on the photos (None: OUT/tune.json's row if present, and each
    # stage's identical alternative)
    tune_json: Path | None = None
    full: bool = False  # also throughput, thread scaling, first calls and the GEMM roofline
    # score every backend again instead of reusing an earlier run's figures for the same inputs
    remeasure_accuracy: bool = False


FULL_ONLY = "measured with --full"
FULL_NOTE = (
    "not measured without --full: throughput at --batch, latency at 1 thread and at all cores, "
    "first calls in fresh processes, the GEMM roofline (efficiency)"
)


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


class _Steps:
    """Times each step (``step_s`` in report.json) and gives it a progress bar."""

    def __init__(self, prog: Any) -> None:
        self.prog = prog
        self.seconds: dict[str, float] = {}

    def run(self, key: str, label: str, fn: Callable[[Any], Any], total: int | None = None) -> Any:
        task = self.prog.add_task(label, total=total)
        t = time.perf_counter()
        result = fn(task)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t
        if total is None:
            self.prog.update(task, total=1, completed=1)
        return result


def _not_measured_throughput(batch: int) -> dict[str, Any]:
    return {"batch": batch, "rounds": 0, "images_per_s": None, "p50_ms": None, "reason": FULL_ONLY}


def _not_measured_first_call() -> dict[str, Any]:
    return {"first_call_ms": None, "peak_rss_mb": None, "base_rss_mb": None, "reason": FULL_ONLY}


def build_report(s: ReportSettings, console: Any = None) -> Report:
    """Run the measuring steps in order and return the report (nothing is written)."""
    from detbench.model.train import model_stats
    from detbench.verify.accuracy_cache import AccuracyStore

    t0 = time.perf_counter()
    chosen = steps.photo_pipeline(s.tune_json)  # a bad --tune-json fails before minutes of measuring
    inp = steps.resolve_inputs(s)
    notes = list(inp.notes)
    names = inp.names
    thread_cols = steps.thread_counts(s.threads, full=s.full)
    if not s.full:
        notes.append(FULL_NOTE)
    with _progress(console) as prog:
        st = _Steps(prog)
        adv = prog.advance
        bench = steps.workbench(inp, s.threads)
        loaded = st.run(
            "export_load",
            "export + load",
            lambda task: steps.load_backends(bench, names, lambda _n: adv(task)),
            len(names),
        )
        # What an end2end export is verified against (its own model's end2end forward); none otherwise.
        refs = steps.load_references(bench, loaded)
        described = steps.describe_rows(loaded)
        x_dev, dev_infos = st.run("deviation", "deviation inputs", lambda _t: steps.deviation_inputs(inp))
        devs, checks = st.run(
            "deviation",
            "deviation",
            lambda _t: steps.measure_deviation(loaded, x_dev, dev_infos, inp.info.names, refs),
        )
        store = AccuracyStore(paths.cache_root() / "accuracy")

        def scored(backends: Mapping[str, Any], label: str) -> Any:  # measured, or reused from store
            return st.run(
                "accuracy",
                label,
                lambda task: steps.measure_accuracy(
                    backends,
                    inp,
                    s.batch,
                    lambda _n, k: adv(task, k),
                    store=store,
                    reuse=not s.remeasure_accuracy,
                ),
                inp.n_val * len(backends),
            )

        acc, acc_notes = scored(loaded, "accuracy")
        ref_acc: dict[str, dict[str, Any]] = {}
        if refs:  # an end2end export's reference is scored (or reused) the same way
            ref_acc, ref_notes = scored(refs, f"accuracy ({', '.join(refs)})")
            acc_notes += ref_notes
        notes += steps.reused_accuracy_notes({**ref_acc, **acc}) + acc_notes
        checks += steps.accuracy_checks(acc, per_class=not s.quick, references=ref_acc)

        # The yardstick, measured right before and right after the batch-1 and batch-N timings and
        # kept at the best of both, so a neighbour's load in one pass cannot lower it below a rate
        # the backends reached.
        def peaks(before: Any) -> Any:
            return steps.measure_peaks(thread_cols, s.matmul_sizes, s.matmul_repeats, before)

        sizes = "/".join(map(str, s.matmul_sizes))
        roofline = steps.no_roofline()
        if s.full:
            roofline = st.run("peak", f"GEMM peaks (n={sizes})", lambda _t: peaks(None))

        def timed(task: Any, fn: Callable[..., Any], *args: Any) -> Any:
            return fn(*args, lambda total: prog.update(task, total=total), lambda k: adv(task, k))

        lat = st.run(
            "latency",
            "latency (batch 1)",
            lambda t: timed(t, measure.measure_latency, loaded, x_dev[:1], s.rounds),
        )
        notes += lat.notes
        latency = steps.latency_rows(lat)
        speedup = steps.speedups(lat)
        tp = {n: _not_measured_throughput(s.batch) for n in names}
        if s.full:
            tp = st.run(
                "throughput",
                f"throughput (batch {s.batch})",
                lambda t: timed(t, measure.measure_throughput, loaded, x_dev, s.batch, s.throughput_rounds),
            )
            roofline = st.run("peak", f"GEMM peaks again (n={sizes})", lambda _t: peaks(roofline))

        def by_threads_step(task: Any) -> Any:  # other thread counts than --threads: --full only
            return steps.measure_latency_by_threads(
                inp,
                x_dev[:1],
                thread_cols,
                {s.threads: lat},
                s.rounds,
                lambda _t: None if task is None else adv(task),
            )

        by_threads = (
            st.run(
                "latency_by_threads",
                f"latency @ {', '.join(map(str, thread_cols))} thread(s)",
                by_threads_step,
                len(thread_cols),
            )
            if s.full
            else by_threads_step(None)
        )
        photos = st.run("photos", "photo-sized set", lambda _t: steps.stage_photos())
        stages = st.run(
            "stages",
            "per-image pipeline",
            lambda _t: measure.measure_stages(loaded, inp.val[:STAGE_IMAGES], inp.imgsz, inp.info.names),
        )
        photo_stages, recommended_stages = st.run(
            "photo_stages",
            f"per-image pipeline ({len(photos)} photos, reference + recommended)",
            lambda _t: steps.measure_photo_pipelines(
                loaded, photos, inp.imgsz, inp.info.names, s.threads, chosen
            ),
        )
        notes += steps.untimed_notes(photo_stages, recommended_stages)
        first = {n: _not_measured_first_call() for n in names}
        if s.full:
            first = st.run(
                "first_call",
                "first call (fresh process)",
                lambda task: measure.measure_first_calls(loaded, inp.imgsz, s.threads, lambda _n: adv(task)),
                len(names),
            )
            notes += [
                f"{n}: no first-call figures ({row['reason']})" for n, row in first.items() if row["reason"]
            ]
        budget, skipped = st.run(
            "budgets",
            "budgets",
            lambda _t: steps.budget_checks(loaded, described, inp.weights, x_dev[:1], lat),
        )
        checks += budget
        notes += skipped

    stats = model_stats(inp.weights, inp.imgsz)
    gflops = stats["gflops"] or None
    if gflops is None:
        notes.append("ultralytics could not count the model's FLOPs (thop missing?): efficiency left out")
    images_per_s = {n: row["images_per_s"] for n, row in tp.items()}
    eff = steps.efficiency(latency, images_per_s, gflops, roofline, s.threads)
    notes += [
        f"peak: {r.runtime} {r.precision} @{r.threads}t not measured: {r.reason}"
        for r in roofline.runs
        if r.reason
    ]
    recommended = steps.load_tune(s.tune_json or s.out / "tune.json")
    training = from_json(Training, load_training(inp.weights))
    history = from_json(History, collect_history(steps.history_dirs()))
    notes += [item for item in (training.note, history.note) if item]
    notes += [f"history: {line}" for line in history.skipped]
    backends = [
        Backend(
            **described[n],
            deviation=devs[n],
            accuracy=from_json(Accuracy, acc[n]),
            latency_ms=latency[n],
            speedup=speedup[n],
            throughput=from_json(Throughput, tp[n]),
            latency_by_threads=by_threads[n],
            stages_ms=from_json(Stages, stages[n]),
            photo_stages_ms=from_json(Stages, photo_stages[n]),
            recommended_photo_stages_ms=from_json(Stages, recommended_stages[n]),
            first_call=from_json(FirstCall, first[n]),
            efficiency=eff[n],
            recommended=bool(recommended and recommended.get("backend") == n),
        )
        for n in names
    ]
    timings = {**st.seconds, "total": time.perf_counter() - t0}
    return Report(
        schema=SCHEMA,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=timings["total"],
        step_s=timings,
        settings=Settings(
            weights=str(inp.weights),
            weights_sha256=sha256_file(inp.weights),
            data=str(inp.data_yaml),
            imgsz=inp.imgsz,
            threads=s.threads,
            batch=s.batch,
            val_images=inp.n_val,
            rounds=s.rounds,
            warmup=s.warmup,
            throughput_rounds=s.throughput_rounds,
            deviation_images=len(x_dev),
            quick=s.quick,
            full=s.full,
            backends=names,
            thread_columns=thread_cols,
        ),
        environment=from_json(Environment, environment(s.threads)),
        model=Model(gflops=gflops, parameters=stats["parameters"]),
        peak=steps.peak_summary(roofline, s.threads),
        recommended=recommended,
        recommended_pipeline=chosen,
        backends=backends,
        class_names=list(inp.info.names),
        training=training,
        history=history,
        plots=Plots(),
        verdict=Verdict(
            passed=all(c.passed for c in checks),
            failed_backends=[n for n in names if not all(c.passed for c in checks if c.backend == n)],
            checks=checks,
        ),
        notes=list(dict.fromkeys(notes)),  # a reason shared by many runs (e.g. each GEMM size) said once
    )


def run_report(settings: ReportSettings, console: Any = None) -> tuple[Report, dict[str, Path]]:
    """Build the report (progress on ``console``) and write it into ``settings.out``; returns the report
    and the files written."""
    from detbench.errors import DetbenchError

    if settings.out.exists() and not settings.out.is_dir():  # fail before minutes of measuring
        raise DetbenchError(f"--out {settings.out}: exists and is not a directory")
    report = build_report(settings, console=console)
    return report, write_report(report, settings.out)


def print_verdict(report: Report, console: Any, *, compare: Path | None = None) -> int:
    """PASS/FAIL per backend (and, with ``compare``, each backend's change); 1 if any failed or regressed."""
    doc = report.to_json()
    for line in verdict.verdict_lines(doc["settings"]["backends"], doc["verdict"]["checks"]):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    code = 0 if report.verdict.passed else 1
    if compare is not None:
        changes = verdict.compare_reports(load_report(compare), doc)
        console.print(f"compared with {compare}:", highlight=False, soft_wrap=True)
        for line in verdict.comparison_lines(changes):
            console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
        code = max(code, int(verdict.any_regression(changes)))
    return code


def load_report(path: Path) -> dict[str, Any]:
    """A report.json written by ``detbench report`` (any schema-1 file); errors name the file."""
    import json

    from detbench.errors import DetbenchError

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
    "DEVIATION_IMAGES",
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
