"""``detbench dashboard --history URL|DIR --out DIR``: one self-contained HTML page of the history.

- per benchmark and machine class, median latency over time (one trace per configuration, whiskers
  p10-p90), each run marked with the gate's verdict against the runs before it
  (detbench.history.gate.compare_with_history, the statistics ``detbench gate`` uses);
- a table of each series' latest run; the latest ``report.json`` summary table; the
  ``detbench tune`` frontier (tune.json ``candidates`` / ``recommended``) when given;
- everything the store could not read, listed, never dropped.

The plotly.js bundle is inlined once (no CDN, no fonts fetched): the page works offline.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detbench.history import store
from detbench.history.gate import compare_with_history, config_key

VERDICT_STYLE = {  # status -> (marker colour, symbol)
    "regression": ("#d62728", "triangle-up"),
    "improvement": ("#2ca02c", "triangle-down"),
    "no change": ("#1f77b4", "circle"),
    "inconclusive": ("#7f7f7f", "circle-open"),
    "missing": ("#7f7f7f", "square-open"),  # the first run of a series: nothing to compare with
}
TUNE_FIELDS = ("backend", "precision", "threads", "batch", "p50_ms", "mAP50-95", "size_mb", "verified")


def _config_label(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={config[k]}" for k in store.CONFIG_KEYS if k in config) or "default"


def series(hist: store.History, *, last: int = 5) -> list[dict[str, Any]]:
    """One entry per (benchmark, machine class, configuration): points oldest first, with verdicts."""
    runs = sorted(hist.runs, key=lambda r: (r.created, r.run_id))
    out: dict[tuple, dict[str, Any]] = {}
    for i, run in enumerate(runs):
        earlier = [r for r in reversed(runs[:i]) if r.machine_id == run.machine_id]
        verdicts = {v.name: v for v in compare_with_history(run, earlier, last=last).verdicts}
        for bench in run.benchmarks:
            key = (bench.fullname, run.machine_id, config_key(bench.config, ()))
            s = out.setdefault(
                key,
                {
                    "benchmark": bench.fullname,
                    "machine_id": run.machine_id,
                    "cpu_model": run.machine.get("cpu_model"),
                    "config": _config_label(bench.config),
                    "points": [],
                },
            )
            ms = np.asarray(bench.samples) * 1e3
            v = verdicts[bench.fullname]
            s["points"].append(
                {
                    "run_id": run.run_id,
                    "created": run.created.isoformat(),
                    "tag": run.tag,
                    "commit": (run.commit or "")[:10],
                    "median_ms": float(np.median(ms)),
                    "p10_ms": float(np.percentile(ms, 10)),
                    "p90_ms": float(np.percentile(ms, 90)),
                    "rounds": int(ms.size),
                    "status": "baseline" if v.status == "missing" else v.status,
                    "change": None if np.isnan(v.change) else v.change,
                }
            )
    return sorted(out.values(), key=lambda s: (s["benchmark"], s["machine_id"], s["config"]))


def _figure_html(title: str, group: Sequence[dict[str, Any]]) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in group:
        pts = s["points"]
        fig.add_trace(
            go.Scatter(
                x=[p["created"] for p in pts],
                y=[p["median_ms"] for p in pts],
                name=s["config"],
                mode="lines+markers",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [p["p90_ms"] - p["median_ms"] for p in pts],
                    "arrayminus": [p["median_ms"] - p["p10_ms"] for p in pts],
                },
                marker={
                    "size": 11,
                    "color": [VERDICT_STYLE.get(p["status"], VERDICT_STYLE["missing"])[0] for p in pts],
                    "symbol": [VERDICT_STYLE.get(p["status"], VERDICT_STYLE["missing"])[1] for p in pts],
                    "line": {"width": 1.5, "color": "#333"},
                },
                text=[
                    f"run {p['run_id']} {p['tag'] or ''} {p['commit']}<br>{p['status']}"
                    + (f" {p['change'] * 100:+.1f}%" if p["change"] is not None else "")
                    for p in pts
                ],
                hovertemplate="%{y:.3f} ms<br>%{text}<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        xaxis_title="run time (UTC)",
        yaxis_title="median latency, ms (whiskers p10-p90)",
        height=360,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"title": {"text": "configuration"}},
        template="plotly_white",
    )
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('-' if c is None else str(c))}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _latest_table(all_series: Sequence[dict[str, Any]]) -> str:
    rows = []
    for s in all_series:
        p = s["points"][-1]
        change = "-" if p["change"] is None else f"{p['change'] * 100:+.1f}"
        rows.append(
            [
                s["benchmark"],
                s["machine_id"],
                s["config"],
                p["run_id"],
                f"{p['median_ms']:.3f}",
                change,
                p["status"],
            ]
        )
    header = ["benchmark", "machine class", "configuration", "run", "median ms", "change %", "verdict"]
    return _table(header, rows, "latest")


def _report_section(report: Mapping[str, Any]) -> str:
    from detbench.report.render import table_rows

    header = [
        "backend",
        "size MB",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "img/s batch",
        "speedup [95% CI]",
        "mAP50",
        "mAP50-95",
        "max dev box/score",
    ]
    env = report.get("environment") or {}
    caption = f"report.json of {report.get('created', '?')} on {env.get('cpu_model', '?')}"
    return f"<h2>Latest report</h2><p>{html.escape(caption)}</p>" + _table(header, table_rows(dict(report)))


def _tune_section(tune: Mapping[str, Any]) -> str:
    import plotly.graph_objects as go

    cands = list(tune.get("candidates") or [])
    rec = tune.get("recommended") or {}
    rows = [[c.get(f) for f in TUNE_FIELDS] + ["yes" if c == rec else ""] for c in cands]
    fig = go.Figure(
        go.Scatter(
            x=[c.get("p50_ms") for c in cands],
            y=[c.get("mAP50-95") for c in cands],
            mode="markers",
            marker={
                "size": [8 + 2 * float(c.get("size_mb") or 0) ** 0.5 for c in cands],
                "color": ["#d62728" if c == rec else "#1f77b4" for c in cands],
            },
            text=[
                f"{c.get('backend')} {c.get('precision')} t={c.get('threads')} b={c.get('batch')}"
                for c in cands
            ],
            hovertemplate="%{text}<br>p50 %{x:.2f} ms, mAP50-95 %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="detbench tune: latency vs accuracy (red: recommended; size ~ artifact MB)",
        xaxis_title="p50 ms",
        yaxis_title="mAP50-95",
        height=360,
        template="plotly_white",
    )
    chart = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
    return "<h2>Tune frontier</h2>" + chart + _table([*TUNE_FIELDS, "recommended"], rows)


CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 24px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.problems { color: #a00; } .chart { border: 1px solid #eee; margin-bottom: 16px; }
"""


def render(
    hist: store.History,
    *,
    location: str,
    report: Mapping[str, Any] | None = None,
    tune: Mapping[str, Any] | None = None,
    last: int = 5,
) -> str:
    """The whole page as one string (plotly.js inlined)."""
    from plotly.offline import get_plotlyjs

    all_series = series(hist, last=last)
    parts = [f"<h1>detbench history</h1><p>{len(hist.runs)} run(s) from {html.escape(location)}</p>"]
    if hist.problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in hist.problems)
        parts.append(f'<div class="problems"><h2>Unreadable history</h2><ul>{items}</ul></div>')
    parts.append("<h2>Latest run of each series</h2>" + _latest_table(all_series))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in all_series:
        groups.setdefault((s["benchmark"], s["machine_id"]), []).append(s)
    parts.append("<h2>Latency over time</h2>")
    for (bench, machine), group in groups.items():
        title = f"{bench} - machine class {machine} ({group[0]['cpu_model']})"
        parts.append(f'<div class="chart">{_figure_html(title, group)}</div>')
    if report is not None:
        parts.append(_report_section(report))
    if tune is not None:
        parts.append(_tune_section(tune))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>detbench history</title>'
        f'<link rel="icon" href="data:,"><style>{CSS}</style><script>{get_plotlyjs()}</script></head>'
        f"<body>{''.join(parts)}</body></html>\n"
    )


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_page(
    out: Path,
    hist: store.History,
    *,
    location: str,
    report: Path | None = None,
    tune: Path | None = None,
    last: int = 5,
) -> Path:
    """Write ``out/index.html`` (the folder is created) from the loaded history, the report.json and
    tune.json when those files exist; returns the page's path."""
    from detbench._fs import atomic_write_text

    page = render(hist, location=location, report=_read_json(report), tune=_read_json(tune), last=last)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "index.html"
    atomic_write_text(target, page)
    return target
