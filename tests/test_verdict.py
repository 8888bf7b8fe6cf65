"""The report's verdict: PASS/FAIL lines per backend, the checks behind them, and report --compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from detbench.errors import DetbenchError
from detbench.perf.budgets import Budgets, LatencyBudget, parse_budgets
from detbench.perf.measure import measure_latency_budgets
from detbench.report import verdict
from detbench.report.build import load_report
from detbench.verify.compare import TOLERANCES


def _acc(map50: float, per_class: dict[str, float]) -> dict:
    return {
        "mAP50": map50,
        "mAP50-95": map50 / 2,
        "per_class": {k: {"mAP50": v, "mAP50-95": v / 2} for k, v in per_class.items()},
    }


class TestChecks:
    def test_tolerance_passes_within_and_fails_beyond_the_row(self) -> None:
        """A 1e-3 px box shift passes onnxruntime's row; a 1 px shift fails it naming the group."""
        ref = np.zeros((1, 14, 8), np.float32)
        ref[:, 4:] = 0.5
        near, far = ref.copy(), ref.copy()
        near[0, 0, 3] += 1e-3
        far[0, 0, 3] += 1.0
        assert verdict.tolerance_check("onnxruntime", ref, near).passed
        bad = verdict.tolerance_check("onnxruntime", ref, far)
        assert not bad.passed and "box outputs differ" in bad.reason

    def test_accuracy_fails_a_collapsed_int8_and_passes_a_close_one(self) -> None:
        """mAP50 0.2 below the reference fails the INT8 bound; 0.005 below passes it."""
        ref = _acc(0.8, {"shirt": 0.8, "shoes": 0.7})
        close = _acc(0.795, {"shirt": 0.79, "shoes": 0.69})
        collapsed = _acc(0.6, {"shirt": 0.5, "shoes": 0.6})
        assert verdict.accuracy_check("onnxruntime-int8", ref, close).passed
        bad = verdict.accuracy_check("onnxruntime-int8", ref, collapsed)
        assert not bad.passed
        assert f"> {TOLERANCES['onnxruntime-int8'].map_drop}" in bad.reason and "class shirt" in bad.reason

    def test_size_budget_goes_to_the_artifacts_backend(self) -> None:
        """A 3x-checkpoint ONNX fails its size budget, charged to onnxruntime."""
        budgets = parse_budgets({"size": {"onnx": {"relative_to": "checkpoint", "max_ratio": 2.2}}})
        (check,) = verdict.size_checks(budgets, {"checkpoint": 100, "onnx": 300}, {"onnx": "onnxruntime"})
        assert (check.backend, check.passed) == ("onnxruntime", False)

    def test_latency_budget_is_measured_paired_and_binds(self) -> None:
        """A callable 3x slower than its denominator fails a 1.1 ratio budget; an equal one passes."""
        data = np.random.default_rng(0).random(4000)
        work = lambda: np.sort(data)  # noqa: E731
        slow = lambda: [np.sort(data) for _ in range(3)]  # noqa: E731
        budgets = Budgets(
            Path("budgets.toml"),
            latency=(
                LatencyBudget("slow/fast", "onnxruntime", "pytorch", 1.1),
                LatencyBudget("skipped", "openvino", "pytorch", 1.1),  # openvino not in the runners
            ),
        )
        measured, notes = measure_latency_budgets(budgets, {"onnxruntime": slow, "pytorch": work}, set())
        checks = verdict.latency_checks(measured)
        assert [(c.backend, c.passed) for c in checks] == [("onnxruntime", False)]
        assert "paired ratio" in checks[0].reason and notes == []


class TestLines:
    CHECKS: ClassVar[list[dict]] = [
        {"backend": "pytorch", "kind": "tolerance", "name": "raw output", "passed": True, "reason": "ok"},
        {"backend": "onnxruntime-int8", "kind": "tolerance", "name": "raw", "passed": True, "reason": "ok"},
        {
            "backend": "onnxruntime-int8",
            "kind": "accuracy",
            "name": "mAP",
            "passed": False,
            "reason": "mAP50 low",
        },
    ]

    def test_one_line_per_backend_and_one_per_failed_check(self) -> None:
        """PASS pytorch, FAIL onnxruntime-int8 with the failed check's reason under it."""
        lines = verdict.verdict_lines(["pytorch", "onnxruntime-int8"], self.CHECKS)
        assert lines[0].startswith("PASS pytorch (1 checks: tolerance)")
        assert lines[1] == "FAIL onnxruntime-int8: 1 of 2 checks failed"
        assert "accuracy mAP: mAP50 low" in lines[2]


def _report(medians_ms: dict[str, float], seed: int, map50: float = 0.8) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "schema": 1,
        "backends": [
            {
                "name": n,
                "latency_ms": {"samples": (m * rng.lognormal(0, 0.03, 60)).tolist()},
                "accuracy": {"mAP50": map50},
            }
            for n, m in medians_ms.items()
        ],
    }


class TestCompare:
    def test_a_slower_backend_is_a_regression_and_the_others_are_not(self) -> None:
        """onnxruntime 30 % slower than in the old report: regression; pytorch unchanged: no change."""
        old = _report({"pytorch": 9.0, "onnxruntime": 4.0}, seed=1)
        new = _report({"pytorch": 9.0, "onnxruntime": 5.2}, seed=2, map50=0.79)
        changes = {c.backend: c for c in verdict.compare_reports(old, new)}
        assert changes["onnxruntime"].latency.status == "regression"
        assert changes["pytorch"].latency.status == "no change"
        assert verdict.any_regression(list(changes.values()))
        lines = verdict.comparison_lines(list(changes.values()))
        assert any(line.startswith("onnxruntime: latency 4.0") and "regression" in line for line in lines)
        assert any("mAP50 0.8000 -> 0.7900" in line for line in lines)

    def test_backends_in_one_report_only_and_old_reports_without_samples(self) -> None:
        """A backend only in one report, or without samples, is listed with why and never a regression."""
        old = _report({"pytorch": 9.0, "openvino": 5.0}, seed=3)
        new = _report({"pytorch": 9.0, "onnxruntime": 4.0}, seed=4)
        del old["backends"][0]["latency_ms"]["samples"]
        changes = verdict.compare_reports(old, new)
        notes = {c.backend: c.note for c in changes}
        assert "older report" in notes["pytorch"]
        assert notes["onnxruntime"] == "only in the new report"
        assert notes["openvino"] == "only in the old report"
        assert not verdict.any_regression(changes)

    def test_load_report_refuses_what_is_not_a_report(self, tmp_path: Path) -> None:
        """A missing file, bad JSON or another JSON document: one error naming --compare and the file."""
        bad = tmp_path / "report.json"
        for content, match in (("{", "not a readable report.json"), (json.dumps({"a": 1}), "not a detbench")):
            bad.write_text(content)
            with pytest.raises(DetbenchError, match=f"--compare {bad}: {match}"):
                load_report(bad)
        with pytest.raises(DetbenchError, match="no such file"):
            load_report(tmp_path / "absent.json")
