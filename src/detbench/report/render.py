"""Renderers of ``detbench report``: the terminal tables, report.md, report.json and the plots.

They read the report's JSON form (``records.Report.to_json()``, the report.json document) that
``report.build.build_report`` returns as a record; nothing here measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detbench.errors import DetbenchError
from detbench.jsonsafe import dumps

if TYPE_CHECKING:
    from detbench.report.records import Plots, Report


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
        f"{s['warmup']} of each block dropped)"
        + (
            f", throughput over {s['throughput_rounds']} calls at batch {batch}"
            if s.get("full", True)
            else ""
        )
        + f"{' (--quick)' if s['quick'] else ''}{' (--full)' if s.get('full') else ''}. "
        f"Created {report['created']} in {report['duration_s']:.0f} s.",
        "## Summary",
        _md_table([h.replace("@N", f"@{batch}") for h in TABLE_HEADER], table_rows(report)),
        "Speedup is pytorch / backend per image at batch 1: the typical ratio of side-by-side block "
        "medians (exp of the Hodges-Lehmann estimate of their log ratios; block k of every backend ran "
        "next to the others') with its paired BCa bootstrap 95% interval; max dev "
        "is the largest absolute difference from eager PyTorch's raw head on "
        f"{s['deviation_images']} val images "
        "(box channels in input pixels, score channels in probability).",
    ]
    no_tp: dict[str, list[str]] = {}
    for r in report["backends"]:
        if r["throughput"]["reason"]:
            no_tp.setdefault(r["throughput"]["reason"], []).append(r["name"])
    parts += [f"- {', '.join(names)}: no throughput: {why}" for why, names in no_tp.items()]
    gfl = report["model"]["gflops"]
    roofline = (
        f"Each backend's share is against the peak "
        f"of its own precision at {peak['threads']} thread(s): the fastest square GEMM of that precision "
        f"(n = {'/'.join(map(str, peak.get('sizes') or [peak['n']]))}) through the runtimes' own kernels "
        f"(ONNX Runtime, OpenVINO), best of {peak['repeats']} in each of two passes around the timings. "
        "Peaks (GFLOP/s; GOP/s for int8): "
        + "; ".join(
            f"{p} " + ", ".join(f"{_f(v, '.0f', 'none')} @{t}t" for t, v in by_t.items())
            for p, by_t in (peak.get("peaks") or {}).items()
        )
        if peak.get("runs")
        else "The GEMM roofline (each backend's share of its precision's peak) is measured with --full"
    )
    parts += [
        "## Efficiency",
        f"{_f(gfl, '.3f')} GFLOPs per image at {s['imgsz']} px. {roofline}"
        + f". ISA: {(peak.get('isa') or {}).get('bf16_reason', '?')}; "
        f"{(peak.get('isa') or {}).get('int8_reason', '?')}.",
        _md_table(
            [
                "backend",
                "precision",
                "GFLOP/s @1",
                "% of peak @1",
                f"GFLOP/s @{batch}",
                f"% of peak @{batch}",
            ],
            [
                [
                    r["name"],
                    e.get("precision", "fp32"),
                    _f(e["gflops_per_s_batch1"], ".2f"),
                    _f(_pct(e["peak_fraction_batch1"]), ".1f"),
                    _f(e["gflops_per_s_batchN"], ".2f"),
                    _f(_pct(e["peak_fraction_batchN"]), ".1f"),
                ]
                for r in report["backends"]
                for e in [r["efficiency"]]
            ],
        ),
        "## Deployment",
        "Latency p50 at 1 thread and at all usable cores (steady state); first call = runtime import "
        "+ load + first inference in a fresh process, with that process's peak RSS and what the "
        "backend added to the RSS before loading (Python, numpy, detbench and torch); the per-image "
        "pipeline (median over val images, one at a time, warm): decode + preprocess, inference, "
        "postprocess (NMS), and the end-to-end sum; the same end to end on photo-sized JPEGs, through "
        "the reference pipeline and through the recommended one, and their ratio. ★ marks "
        "the configuration `detbench tune` recommended."
        + ("" if s.get("full", True) else " Other thread counts and first calls are measured with --full."),
        _md_table(deploy_header(report), deployment_rows(report)),
        *filter(None, [recommended_pipeline_line(report)]),
        "## Per-image pipeline",
        "One image at a time as a deployment runs it (decode the file, letterbox, infer, NMS), "
        "medians in ms. Warm: the passes over the images after a first (cold) pass, alternated "
        "between backends in blocks, each after an untimed settle; cold: the first pass's end to end. "
        '"photos, recommended": the same photos through the recommended pipeline, its blocks beside '
        "the reference's.",
        _md_table(STAGE_HEADER, stage_rows(report)),
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


STAGE_KEYS = ("decode_preprocess_ms", "inference_ms", "postprocess_ms", "end_to_end_ms")
STAGE_HEADER = (
    "backend",
    "images",
    "warm passes",
    "decode",
    "preprocess",
    "inference",
    "postprocess",
    "end to end",
    "cold end to end",
)
_STAGE_SETS = (
    ("stages_ms", "val"),
    ("photo_stages_ms", "photos"),
    ("recommended_photo_stages_ms", "photos, recommended"),
)


def stage_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per backend and image set (val, photos) with every stage's median; "-" where a file
    has no such figure (older files: one cold pass, decode and preprocess together)."""
    out = []
    for r in report["backends"]:
        for key, label in _STAGE_SETS:
            st = r.get(key)
            if not st:
                continue
            cells = [r["name"], f"{st['images']} {label}"]
            if st.get("reason"):
                out.append([*cells, "-", st["reason"], *("-" for _ in STAGE_HEADER[4:])])
                continue
            cells.append(str(st.get("warm_passes", "-")))
            cells += [
                _f(st.get(k), ".2f")
                for k in (
                    "decode_ms",
                    "preprocess_ms",
                    "inference_ms",
                    "postprocess_ms",
                    "end_to_end_ms",
                    "cold_end_to_end_ms",
                )
            ]
            out.append(cells)
    return out


def deploy_header(report: dict[str, Any]) -> list[str]:
    threads = report["settings"].get("thread_columns") or []
    return [
        "backend",
        *(f"p50 ms @{t}t" for t in threads),
        "first call ms",
        "peak RSS MB",
        "RSS added MB",
        "decode+pre ms",
        "inference ms",
        "post ms",
        "end-to-end ms",
        "photos e2e ms",
        "photos rec. e2e ms",
        "rec. speedup",
    ]


def deployment_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per backend: latency per thread count, cold start, RSS and the per-image split."""
    rec = report.get("recommended") or {}
    out = []
    for r in report["backends"]:
        by_t, fc, st = r.get("latency_by_threads") or {}, r.get("first_call") or {}, r.get("stages_ms") or {}
        cells = [r["name"] + (" ★" if r.get("recommended") else "")]
        for t in report["settings"].get("thread_columns") or []:
            mark = " ★" if r.get("recommended") and str(rec.get("threads")) == str(t) else ""
            cells.append(_f((by_t.get(str(t)) or {}).get("p50"), ".2f") + mark)
        cells += [
            _f(fc.get("first_call_ms"), ".0f"),
            _f(fc.get("peak_rss_mb"), ".0f"),
            _f(_minus(fc.get("peak_rss_mb"), fc.get("base_rss_mb")), ".0f"),
            *(_f(st.get(k), ".2f") for k in STAGE_KEYS),
        ]
        ref = (r.get("photo_stages_ms") or {}).get("end_to_end_ms")
        rec_e2e = (r.get("recommended_photo_stages_ms") or {}).get("end_to_end_ms")
        speedup = None if ref is None or not rec_e2e else ref / rec_e2e
        cells += [_f(ref, ".2f"), _f(rec_e2e, ".2f"), _f(speedup, ".2f") + ("x" if speedup else "")]
        out.append(cells)
    return out


def recommended_pipeline_line(report: dict[str, Any]) -> str | None:
    """Which pipeline the "photos rec." figures are and where its variants came from; None for a file
    from before they were measured."""
    p = report.get("recommended_pipeline")
    if not p:
        return None
    where = (
        f"tune.json's recommended pipeline (--tune-json {p['tune_json']})"
        if p["source"] == "tune.json"
        else "each stage's registered variant that claims the reference's output (no --tune-json)"
    )
    check = (
        "every stage claims identical output"
        if p["identical"]
        else "not identical: timed on a backend only after its detections on the photos matched the "
        "reference pipeline's within verify.decode's bounds, else the reason is shown"
    )
    return (
        f"Recommended pipeline {p['decode']}/{p['preprocess']}/{p['postprocess']} "
        f"(decode/preprocess/postprocess): {where}; {check}. Timed on the photos beside the reference "
        "pipeline (each stage's reference variant), blocks alternated in the same run; rec. speedup = "
        "photos e2e / photos rec. e2e (p50 per image)."
    )


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else fraction * 100


def _prm(v: dict | None) -> str:
    if not v or v.get("mAP50") is None:
        return "absent"
    return f"{v['precision']:.2f} / {v['recall']:.2f} / {v['mAP50']:.2f}"


def draw_plots(report: dict[str, Any], out: Path) -> Plots:
    from detbench.report import plots
    from detbench.report.records import Plots

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
    return Plots(**drawn)


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """Draw the plots, then write report.json and report.md atomically; return what was written."""
    from detbench._fs import atomic_write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DetbenchError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    # a plot left out is explained by the training/history notes
    doc = replace(report, plots=draw_plots(report.to_json(), out)).to_json()
    atomic_write_text(out / "report.json", dumps(doc) + "\n")
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
    deploy = Table(title="deployment: latency by threads, cold start, per-image pipeline")
    for i, h in enumerate(deploy_header(report)):
        deploy.add_column(h, justify="left" if i == 0 else "right")
    for row in deployment_rows(report):
        deploy.add_row(*row)
    console.print(deploy)
    line = recommended_pipeline_line(report)
    if line:
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    gflops, peak = report["model"]["gflops"], report["peak"]
    if gflops and peak.get("runs"):
        achieved = ", ".join(
            f"{r['name']} {_f(_pct(r['efficiency']['peak_fraction_batch1']), '.0f')}%"
            for r in report["backends"]
        )
        console.print(
            f"{gflops:.3f} GFLOPs/image; share of each backend's own-precision GEMM peak "
            f"(runtimes' kernels, {peak['threads']} thread(s)) at batch 1: {achieved}",
            highlight=False,
            soft_wrap=True,
        )
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
