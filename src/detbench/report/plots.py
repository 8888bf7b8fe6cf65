"""The report's PNG figures, drawn with matplotlib's Agg canvas (no display, no pyplot global state).

Each function takes plain report data (the dicts ``detbench.report.build`` writes to report.json) and a
destination, writes the PNG atomically and returns its path. Text uses the DejaVu fonts matplotlib
ships, so nothing is fetched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detbench._fs import atomic_write_bytes


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, dest: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(dest, buf.getvalue())
    return dest


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def latency_vs_size(backends: Sequence[Mapping[str, Any]], dest: Path) -> Path:
    """One point per backend: artifact size (MB) against p50 latency at batch 1, labelled with mAP50-95."""
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    # Labels go in the legend: backends of similar size and speed sit on top of each other.
    for i, row in enumerate(backends):
        m = row["accuracy"]["mAP50-95"]
        ax.scatter(
            [row["size_mb"]],
            [row["latency_ms"]["p50"]],
            s=50,
            color=f"C{i}",
            marker="os^Dv<>ph*"[i % 10],
            label=f"{row['name']}: mAP50-95 {m:.3f}",
        )
    ax.legend(fontsize=8)
    ax.set_xlabel("artifact size (MB)")
    ax.set_ylabel("latency p50 at batch 1 (ms)")
    ax.set_title("Latency vs size")
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.2)
    return _save(fig, dest)


def per_class_map50(backends: Sequence[Mapping[str, Any]], names: Sequence[str], dest: Path) -> Path:
    """Grouped bars: per-class mAP50 of every backend; a class absent from the split has no bar."""
    fig = _figure(max(7.0, 0.9 * len(names) + 2), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(backends))
    for j, row in enumerate(backends):
        per_class = row["accuracy"]["per_class"]
        heights = [_num(per_class.get(n, {}).get("mAP50")) for n in names]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(names))]
        ax.bar(xs, [0.0 if math.isnan(h) else h for h in heights], width, label=row["name"], color=f"C{j}")
    ax.set_xticks(range(len(names)), list(names), rotation=30, ha="right")
    ax.set_ylabel("mAP50")
    ax.set_ylim(0, 1.2)  # headroom for the legend above the bars
    ax.set_title("Per-class mAP50 by backend")
    ax.legend(fontsize=8, ncols=max(1, len(backends)), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, dest)


LOSS_KEYS = (
    "train_box_loss",
    "train_cls_loss",
    "train_dfl_loss",
    "val_box_loss",
    "val_cls_loss",
    "val_dfl_loss",
)
MAP_KEYS = ("mAP50", "mAP50-95", "precision", "recall")


def training_curves(epochs: Sequence[Mapping[str, Any]], dest: Path) -> Path:
    """Losses (train solid, val dashed) and mAP/precision/recall per epoch, from metrics.json."""
    fig = _figure(10, 4)
    loss_ax, map_ax = fig.subplots(1, 2)
    xs = [int(e["epoch"]) for e in epochs]
    for key in LOSS_KEYS:
        if all(key in e for e in epochs):
            loss_ax.plot(
                xs,
                [_num(e[key]) for e in epochs],
                "--" if key.startswith("val") else "-",
                marker="o",
                label=key,
            )
    for key in MAP_KEYS:
        if all(key in e for e in epochs):
            map_ax.plot(xs, [_num(e[key]) for e in epochs], marker="o", label=key)
    for ax, title in ((loss_ax, "losses"), (map_ax, "validation metrics")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    map_ax.set_ylim(0, 1.05)
    return _save(fig, dest)


def latency_history(runs: Sequence[Mapping[str, Any]], dest: Path, *, max_series: int = 12) -> Path:
    """Median latency (ms) of each benchmark over saved runs, oldest first.

    ``runs`` items carry ``label`` and ``medians_ms`` {benchmark: ms}. Only the ``max_series``
    benchmarks seen in most runs are drawn, so the legend stays readable.
    """
    counts: dict[str, int] = {}
    for run in runs:
        for name in run["medians_ms"]:
            counts[name] = counts.get(name, 0) + 1
    chosen = sorted(counts, key=lambda n: (-counts[n], n))[:max_series]
    fig = _figure(10, 4.5)
    ax = fig.add_subplot()
    for name in sorted(chosen):
        xs = [i for i, run in enumerate(runs) if name in run["medians_ms"]]
        ax.plot(xs, [runs[i]["medians_ms"][name] for i in xs], marker="o", label=name.split("::")[-1])
    ax.set_xticks(range(len(runs)), [str(r["label"]) for r in runs], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("median latency (ms)")
    ax.set_title("Latency over saved benchmark runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, dest)
