"""What ``detbench tune`` writes: tune.json, tune.md (configurations, then pipelines), the Pareto
plot, the recommended artifact and a ready budgets entry. Renderers read the search's result document
only; they measure nothing."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detbench._fs import atomic_write_bytes, atomic_write_text

PLOT = "pareto.png"
BUDGETS = "budgets.toml"
ABSOLUTE_HEADROOM = 1.5  # the budget is 1.5x the measured median, like scripts/measure_budgets.py
SIZE_HEADROOM = 1.1


def _f(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


COLUMNS = ("config", "precision", "p50 ms", "p99 ms", "first call ms", "peak RSS MB", "size MB")
COLUMNS += ("mAP50", "mAP50-95", "verified")


def rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """One row per candidate, fastest verified first, then the unverified; * marks the recommended,
    P the Pareto front."""
    rec = (doc.get("recommended") or {}).get("index")
    cands = list(enumerate(doc["candidates"]))
    cands.sort(key=lambda ic: (not ic[1]["verified"], ic[1]["p50_ms"] or float("inf")))
    out = []
    for i, c in cands:
        mark = ("*" if i == rec else "") + ("P" if c.get("pareto") else "")
        out.append(
            [
                f"{c['label']}{' ' + mark if mark else ''}",
                c["precision"],
                _f(c["p50_ms"], ".3f"),
                _f(c["p99_ms"], ".3f"),
                _f(c["first_call_ms"], ".0f"),
                _f(c["peak_rss_mb"], ".0f"),
                _f(c["size_mb"]),
                _f(c["mAP50"], ".4f"),
                _f(c["mAP50-95"], ".4f"),
                "yes" if c["verified"] else "no",
            ]
        )
    return out


PIPELINE_COLUMNS = ("pipeline", "e2e p50", "e2e p99", "inference p50", "admitted")


def pipeline_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """One row per searched pipeline, fastest admitted first; * marks the recommended."""
    rec = (doc.get("recommended_pipeline") or {}).get("index")
    ps = list(enumerate(doc.get("pipelines") or []))
    ps.sort(key=lambda ip: (not ip[1]["admitted"], ip[1]["e2e_p50_ms"] or float("inf"), ip[0]))
    return [
        [
            f"{p['label']}{' *' if i == rec else ''}",
            _f(p["e2e_p50_ms"], ".3f"),
            _f(p["e2e_p99_ms"], ".3f"),
            _f(p["inference_p50_ms"], ".3f"),
            ("yes" if p["identical"] else "yes (checked)") if p["admitted"] else "no",
        ]
        for i, p in ps
    ]


def _pipelines_markdown(doc: Mapping[str, Any]) -> list[str]:
    photos, rec = doc.get("photos"), doc.get("recommended_pipeline")
    if not doc.get("pipelines") or photos is None:
        return []
    plan = photos["plan"]
    parts = ["## Pipelines (end to end on the photo-sized set)", ""]
    if rec:
        ref = rec["reference_e2e_p50_ms"]
        vs = "" if ref is None else f" (reference pipeline {ref:.3f} ms, {ref / rec['e2e_p50_ms']:.2f}x)"
        parts += [
            f"**Recommended pipeline: {rec['decode']}/{rec['preprocess']}/{rec['postprocess']} on "
            f"{rec['backend']} {rec['threads']}t**: {rec['e2e_p50_ms']:.3f} ms per image end to end{vs}, "
            f"inference alone {_f(rec['inference_p50_ms'], '.3f')} ms. Load it with "
            "`detbench.load_pipeline('tune.json')` or `detbench predict --pipeline recommended`.",
            "",
        ]
    parts += [
        f"{len(photos['images'])} photos ({', '.join(photos['images'])}); one call = one pass over them "
        f"(file to detections in full-image pixels), ms per image = pass / photos; {plan['blocks']} "
        f"alternated blocks of {plan['block_calls']} passes, first {plan['discard']} dropped. Inference "
        "= the configuration's backend alone on the same photos' model inputs, same run. Identical "
        "pipelines are admitted as claimed; the others only within verify.decode's bounds, checked "
        "on these photos.",
        "",
        _md_table(PIPELINE_COLUMNS, pipeline_rows(doc)),
        "",
    ]
    refused = [p for p in doc["pipelines"] if not p["admitted"]]
    if refused:
        parts += ["Not admitted:", ""] + [f"- {p['label']}: {p['reason']}" for p in refused] + [""]
    return parts


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def render_markdown(doc: Mapping[str, Any]) -> str:
    s, env, rec = doc["settings"], doc["environment"], doc.get("recommended")
    ref = (doc["reference"] or {}).get("accuracy")
    parts = [
        "# detbench tune",
        "",
        f"{doc['created']} · {env['cpu_model']} · {env['usable_cores']} usable cores · "
        f"weights `{Path(s['weights']).name}` · {s['imgsz']} px · {s['points']} configurations "
        f"in {doc['duration_s']:.0f} s",
        "",
    ]
    if rec:
        parts += [
            f"**Recommended: {rec['label']}** ({rec['precision']}): p50 {rec['p50_ms']:.3f} ms, "
            f"p99 {rec['p99_ms']:.3f} ms, mAP50-95 {_f(rec['mAP50-95'], '.4f')}, {rec['size_mb']:.2f} MB. "
            f"Artifact and budgets entry: `recommended/`, `{BUDGETS}`.",
            "",
        ]
    if ref:
        parts += [
            f"Reference (eager PyTorch, 1 thread): mAP50 {ref['mAP50']:.4f}, mAP50-95 "
            f"{ref['mAP50-95']:.4f} on {ref['images']} val images.",
            "",
        ]
    parts += [
        "Latency: batch 1, steady state (blocks of "
        f"{s['block_calls']} consecutive calls, first {s['discard']} dropped, {s['blocks']} blocks per "
        "configuration, blocks alternated A B C C B A); first call = load + first inference in a fresh "
        "process. `*` recommended (fastest verified), `P` Pareto front (p50, mAP50-95, size).",
        "",
        _md_table(COLUMNS, rows(doc)),
        "",
    ]
    parts += _pipelines_markdown(doc)
    failed = [c for c in doc["candidates"] if not c["verified"]]
    if failed:
        parts += ["## Not verified", ""] + [f"- {c['label']}: {c['reason']}" for c in failed] + [""]
    if doc["notes"]:
        parts += ["## Notes", ""] + [f"- {n}" for n in doc["notes"]] + [""]
    parts += [f"![latency vs mAP50-95]({PLOT})", ""]
    return "\n".join(parts)


def pareto_plot(doc: Mapping[str, Any], dest: Path) -> Path:
    """Verified candidates: p50 latency against mAP50-95, marker area proportional to artifact
    size; the Pareto front joined by a line, the recommended ringed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cands = [c for c in doc["candidates"] if c["verified"] and c["p50_ms"] is not None]
    # latency-only runs have no mAP: plot them at 0 so the latency axis still shows
    ys = [c["mAP50-95"] if c["mAP50-95"] is not None else 0.0 for c in cands]
    by_backend = sorted({c["backend"] for c in cands})
    for c, y in zip(cands, ys):
        k = by_backend.index(c["backend"])
        ax.scatter(
            [c["p50_ms"]],
            [y],
            s=20 + 15 * c["size_mb"],
            color=f"C{k % 10}",
            marker="o" if c["dynamic_batch"] else "s",
            alpha=0.6,
            edgecolors="black" if c.get("pareto") else "none",
        )
        ax.annotate(
            f"{c['threads']}t", (c["p50_ms"], y), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    for k, name in enumerate(by_backend):
        ax.scatter([], [], color=f"C{k % 10}", label=name)
    front = sorted((c["p50_ms"], y) for c, y in zip(cands, ys) if c.get("pareto"))
    if front:
        ax.plot(*zip(*front), "k--", lw=0.8, label="Pareto front")
    rec = doc.get("recommended")
    if rec:
        y = rec["mAP50-95"] if rec["mAP50-95"] is not None else 0.0
        ax.scatter(
            [rec["p50_ms"]], [y], s=300, facecolors="none", edgecolors="red", lw=2, label="recommended"
        )
    if ys and max(ys) - min(ys) < 0.02:  # a 1e-4 mAP difference should not fill the whole axis
        mid = (max(ys) + min(ys)) / 2
        ax.set_ylim(mid - 0.02, mid + 0.02)
    ax.set_xlabel("p50 latency at batch 1 (ms), steady state")
    ax.set_ylabel("mAP50-95")
    ax.set_title(
        "detbench tune: verified configurations (marker area = artifact size; squares: static batch)"
    )
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(dest, buf.getvalue())
    return dest


def copy_artifact(artifact: Path, out: Path) -> Path:
    """Copy the recommended artifact (a file or an OpenVINO IR folder) to ``out/recommended/``."""
    dest_dir = out / "recommended"
    if dest_dir.exists():
        shutil.rmtree(dest_dir)
    dest_dir.mkdir(parents=True)
    dest = dest_dir / artifact.name
    if artifact.is_dir():
        shutil.copytree(artifact, dest)
    else:
        shutil.copy2(artifact, dest)
    return dest


def budgets_entry(doc: Mapping[str, Any], *, command: str, checkpoint_bytes: int | None) -> str:
    """A ``fixtures/budgets.toml`` snippet for the recommended configuration: an absolute budget
    for this machine at its thread count, and (for a format the exporter builds) a size budget.
    Validated by ``perf.budgets.loads`` before it is returned."""
    import tomli_w

    from detbench.perf.budgets import loads
    from detbench.runtimes.backends import REGISTRY
    from detbench.runtimes.export import FORMATS

    rec = doc["recommended"]
    env = doc["environment"]
    date = doc["created"][:10]
    measured = {"p50_ms": round(rec["p50_ms"], 4), "p99_ms": round(rec["p99_ms"], 4)}
    measured |= {"date": date, "command": command, "dynamic_batch": rec["dynamic_batch"]}
    table: dict[str, Any] = {
        "absolute": {
            env["machine_id"]: {
                "threads": rec["threads"],
                rec["backend"]: round(rec["p50_ms"] * ABSOLUTE_HEADROOM, 3),
                "measured": measured,
            }
        }
    }
    fmt = REGISTRY[rec["backend"]].artifact_format
    if fmt in FORMATS and checkpoint_bytes:
        ratio = rec["size_mb"] * 1e6 / checkpoint_bytes
        table["size"] = {
            fmt: {
                "relative_to": "checkpoint",
                "max_ratio": round(ratio * SIZE_HEADROOM, 3),
                "measured": {"ratio": round(ratio, 4), "date": date, "command": command},
            }
        }
    header = (
        f"# From `{command}` on {date}: recommended {rec['label']} ({rec['precision']}).\n"
        f"# Absolute budget = {ABSOLUTE_HEADROOM}x the measured p50, applied only on machine "
        f"{env['machine_id']} at threads = {rec['threads']}\n"
        "# (the suite times the cached dynamic-batch export; merge by hand if this machine already has a\n"
        "# table at another thread count). Size budget = "
        f"{SIZE_HEADROOM}x the measured ratio to the checkpoint.\n"
    )
    text = header + tomli_w.dumps(table)
    loads(text, "<tune budgets entry>")
    return text


def write_outputs(
    doc: dict[str, Any], out: Path, *, artifact: Path | None, command: str, checkpoint_bytes: int | None
) -> dict[str, Path]:
    """Everything into ``out``; returns {what: path}."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if doc.get("recommended") and artifact is not None:
        dest = copy_artifact(artifact, out)
        doc["recommended"]["copied_to"] = str(dest)
        written["artifact"] = dest
        budgets = out / BUDGETS
        atomic_write_text(budgets, budgets_entry(doc, command=command, checkpoint_bytes=checkpoint_bytes))
        written["budgets"] = budgets
    written["plot"] = pareto_plot(doc, out / PLOT)
    doc["plot"] = PLOT
    written["json"] = out / "tune.json"
    atomic_write_text(written["json"], json.dumps(doc, indent=2, allow_nan=False) + "\n")
    written["md"] = out / "tune.md"
    atomic_write_text(written["md"], render_markdown(doc))
    return written
