"""The report's verdict: PASS/FAIL per backend, and the change of each backend against an older report.

A backend passes when every check that applies to it passes:

- **tolerance**: its raw head output on the report's deviation images is within its row of
  ``verify.compare.TOLERANCES`` (``assert_outputs_close``; run while the report has the tensors); a
  backend whose output is end2end detections (no raw head) has its detections matched with the
  model's own end2end forward's instead (``assert_detections_match``);
- **accuracy**: its mAP50 / mAP50-95 / per-class mAP50 within the row's bounds of its reference's
  (eager PyTorch's, or the model's own end2end forward's for an end2end export;
  ``assert_accuracy_close``), on the images the report scored;
- **budgets**: each size budget of its artifact format and each latency ratio budget it is the
  numerator of (``fixtures/budgets.toml``), latency measured in alternated blocks
  (``perf.measure.measure_latency_budgets``) and judged with the paired interval exactly as
  ``tests/test_budgets.py`` does.

The checks are data (``report.records.Check``); the report stores them in ``report.json`` under
``verdict`` and this module renders them. ``compare_reports`` runs the unpaired gate (two reports are
two sessions) on each backend's per-call latency samples and puts the accuracy change beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detbench.perf.measure import MeasuredBudget
from detbench.perf.stats import Verdict, compare_samples
from detbench.report.records import Check


def tolerance_check(backend: str, ref: np.ndarray, out: np.ndarray) -> Check:
    """The backend's raw output against eager PyTorch's, within its tolerance row."""
    from detbench.verify.compare import TOLERANCES, OutputMismatch, assert_outputs_close

    tol = TOLERANCES[backend]
    try:
        dev = assert_outputs_close(ref, out, tol, label=backend)
    except OutputMismatch as exc:
        return Check(backend, "tolerance", "raw output", False, str(exc).splitlines()[0])
    return Check(
        backend,
        "tolerance",
        "raw output",
        True,
        f"box max abs {dev.box_max_abs:.3g} px (atol {tol.box_atol:g}), "
        f"score max abs {dev.score_max_abs:.3g} (atol {tol.score_atol:g})",
    )


def detections_check(backend: str, ref: Sequence[Any], out: Sequence[Any]) -> Check:
    """The detections of a backend without a raw head (an end2end export) against its reference's
    (the model's own end2end forward), matched within its tolerance row as the suite matches them."""
    from detbench.verify.compare import (
        TOLERANCES,
        OutputMismatch,
        assert_detections_match,
        detection_deviation,
    )

    tol = TOLERANCES[backend]
    try:
        assert_detections_match(ref, out, tol, label=backend)
    except OutputMismatch as exc:
        return Check(backend, "tolerance", "detections", False, " ".join(str(exc).split())[:400])
    d = detection_deviation(ref, out, iou=tol.det_iou)  # at the row's bound: what passed
    return Check(
        backend,
        "tolerance",
        "detections",
        True,
        f"{d.pairs} matched, {d.unmatched} unmatched; IoU >= {d.min_iou:.4f} (bound {tol.det_iou:g}), "
        f"score max abs {d.score_max_abs:.3g} (bound {tol.det_score:g})",
    )


def accuracy_check(
    backend: str, ref: Mapping[str, Any], out: Mapping[str, Any], *, per_class: bool = True
) -> Check:
    """The backend's accuracy against eager PyTorch's on the same images, within its tolerance row.

    ``per_class=False`` (``report --quick``: 64 images) judges the overall mAP only: a rare class has
    a handful of boxes there, and one of them moves its mAP50 by more than the per-class bound
    (openvino-int8's sunglass read -0.052 on 64 images, -0.033 on the 200 of the full split)."""
    from detbench.verify.compare import TOLERANCES, OutputMismatch, assert_accuracy_close

    tol = TOLERANCES[backend]
    if not per_class:
        ref, out = {**ref, "per_class": {}}, {**out, "per_class": {}}
    try:
        assert_accuracy_close(dict(ref), dict(out), tol, label=backend)
    except OutputMismatch as exc:
        return Check(backend, "accuracy", "mAP", False, " ".join(str(exc).split()))
    return Check(
        backend,
        "accuracy",
        "mAP",
        True,
        f"mAP50 {out['mAP50']:.4f} vs {ref['mAP50']:.4f}, mAP50-95 {out['mAP50-95']:.4f} vs "
        f"{ref['mAP50-95']:.4f} (bound {tol.map_drop:g}, "
        + (f"per class {tol.class_map_drop:g})" if per_class else "per class: full split only)"),
    )


def size_checks(budgets: Any, sizes: Mapping[str, int], backend_of: Mapping[str, str]) -> list[Check]:
    """Each size budget whose artifact and reference were both measured (``sizes`` by format)."""
    from detbench.perf.budgets import check_size

    out = []
    for b in budgets.size:
        if b.artifact in sizes and b.relative_to in sizes and b.artifact in backend_of:
            r = check_size(b, sizes[b.artifact], sizes[b.relative_to])
            out.append(Check(backend_of[b.artifact], "size budget", b.name, r.passed, r.reason))
    return out


def latency_checks(measured: Sequence[MeasuredBudget]) -> list[Check]:
    """Each latency budget measured on this machine (``perf.measure.measure_latency_budgets``), charged
    to its numerator's backend."""
    from detbench.perf.budgets import latency_message

    return [
        Check(m.budget.numerator, "latency budget", m.budget.name, m.result.passed, latency_message(m.result))
        for m in measured
    ]


def verdict_lines(backends: Sequence[str], checks: Sequence[Mapping[str, Any]]) -> list[str]:
    """One "PASS name (n checks)" or "FAIL name: why" line per backend, then one line per failed check."""
    lines = []
    for name in backends:
        mine = [c for c in checks if c["backend"] == name]
        failed = [c for c in mine if not c["passed"]]
        kinds = ", ".join(dict.fromkeys(c["kind"] for c in mine)) or "no checks"
        if failed:
            lines.append(f"FAIL {name}: {len(failed)} of {len(mine)} checks failed")
            lines += [f"     {c['kind']} {c['name']}: {c['reason']}" for c in failed]
        else:
            lines.append(f"PASS {name} ({len(mine)} checks: {kinds})")
    return lines


# -- comparing two reports ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendChange:
    backend: str
    latency: Verdict | None  # None: one report has no latency samples for it
    map50_old: float | None
    map50_new: float | None
    note: str


def _samples(row: Mapping[str, Any]) -> np.ndarray | None:
    lat = row.get("latency_ms") or {}
    data = lat.get("samples")
    return None if not data else np.asarray(data, dtype=np.float64) / 1e3


def compare_reports(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[BackendChange]:
    """Per backend in either report: the gate's unpaired verdict on per-call latency, and mAP50 old -> new."""
    old_rows = {r["name"]: r for r in old.get("backends", [])}
    new_rows = {r["name"]: r for r in new.get("backends", [])}
    out = []
    for name in [*new_rows, *(n for n in old_rows if n not in new_rows)]:
        o, n = old_rows.get(name), new_rows.get(name)
        if o is None or n is None:
            where = "new" if o is None else "old"
            out.append(BackendChange(name, None, None, None, f"only in the {where} report"))
            continue
        so, sn = _samples(o), _samples(n)
        note = "" if so is not None and sn is not None else "no latency samples (an older report.json)"
        v = compare_samples(name, so, sn) if not note else None
        acc_o, acc_n = o.get("accuracy") or {}, n.get("accuracy") or {}
        out.append(BackendChange(name, v, acc_o.get("mAP50"), acc_n.get("mAP50"), note))
    return out


def _pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x * 100:+.1f}%"


def comparison_lines(changes: Sequence[BackendChange]) -> list[str]:
    lines = []
    for c in changes:
        if c.latency is None:
            lines.append(f"{c.backend}: {c.note}")
            continue
        v = c.latency
        acc = (
            f"mAP50 {c.map50_old:.4f} -> {c.map50_new:.4f}"
            if c.map50_old is not None and c.map50_new is not None
            else "mAP50 -"
        )
        lines.append(
            f"{c.backend}: latency {v.median_base * 1e3:.3f} -> {v.median_cand * 1e3:.3f} ms, "
            f"change {_pct(v.change)} (95% CI {_pct(v.ci_low)}..{_pct(v.ci_high)}, p {v.p_value:.2g}): "
            f"{v.status}; {acc}"
        )
    return lines


def any_regression(changes: Sequence[BackendChange]) -> bool:
    return any(c.latency is not None and c.latency.status == "regression" for c in changes)
