"""`detbench dashboard`: one offline page, checked in headless Chromium (errors, charts, numbers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from _support import browser
from _support.runs import benchmark_run
from detbench.cli import main
from detbench.history import store

T0 = datetime(2026, 11, 1, tzinfo=UTC)
BENCHES = {"t.py::test_latency[onnxruntime]": 4.0, "t.py::test_latency[pytorch]": 9.0}
needs_chromium = pytest.mark.skipif(
    browser.chromium_path() is None,
    reason="headless Chromium not found (apt-get install chromium, or set DETBENCH_CHROMIUM)",
)
TUNE = {
    "candidates": [
        {
            "backend": "onnxruntime",
            "precision": "fp32",
            "threads": 1,
            "batch": 1,
            "p50_ms": 4.1,
            "mAP50-95": 0.612,
            "size_mb": 12.1,
            "verified": True,
        },
        {
            "backend": "onnxruntime-int8",
            "precision": "int8",
            "threads": 1,
            "batch": 1,
            "p50_ms": 2.7,
            "mAP50-95": 0.598,
            "size_mb": 3.2,
            "verified": True,
        },
    ],
}
TUNE["recommended"] = TUNE["candidates"][1]


def report_doc() -> dict:
    """The fields of report.json the summary table reads (report.build.table_rows)."""
    row = {
        "name": "onnxruntime", "size_mb": 12.13,
        "latency_ms": {"p50": 4.321, "p90": 4.5, "p99": 5.0},
        "throughput": {"images_per_s": 250.0},
        "speedup": {"ratio": 2.1, "ci_low": 2.0, "ci_high": 2.2},
        "accuracy": {"mAP50": 0.9, "mAP50-95": 0.6123},
        "deviation": {"box_max_abs": 1e-4, "score_max_abs": 1e-5},
    }  # fmt: skip
    return {"created": "2026-11-02T00:00:00Z", "environment": {"cpu_model": "Test CPU"}, "backends": [row]}


@pytest.fixture
def dashboard(postgres_url, tmp_path) -> tuple[Path, dict[str, float]]:
    """A page from a PostgreSQL history of 3 runs at threads=1, then one at threads=2 (ort 30% slower)."""
    with store.open_store(postgres_url) as s:
        for i, (threads, ort) in enumerate([(1, 4.0), (1, 4.0), (1, 4.0), (2, 5.2)]):
            doc = benchmark_run({**BENCHES, "t.py::test_latency[onnxruntime]": ort}, seed=i, threads=threads,
                                created=T0 + timedelta(hours=i))  # fmt: skip
            s.save(doc)
        latest = {b.fullname: float(np.median(b.samples)) * 1e3 for b in s.load(limit=1).runs[0].benchmarks}
    (tmp_path / "report.json").write_text(__import__("json").dumps(report_doc()))
    (tmp_path / "tune.json").write_text(__import__("json").dumps(TUNE))
    argv = ["dashboard", "--history", postgres_url, "--out", str(tmp_path / "out")]
    assert (
        main([*argv, "--report", str(tmp_path / "report.json"), "--tune", str(tmp_path / "tune.json")]) == 0
    )
    return tmp_path / "out" / "index.html", latest


def test_page_is_self_contained(dashboard):
    page = dashboard[0].read_text()
    assert "<script src" not in page and "cdn.plot.ly" not in page.replace("https://cdn.plot.ly/", "")
    assert (
        "Plotly.newPlot" in page and page.count('class="chart"') == 2
    )  # per benchmark; threads 1, 2 are traces
    assert "regression" not in page.split("Latency over time")[0]  # threads=2 has no earlier run


@needs_chromium
def test_page_renders_in_chromium(dashboard, tmp_path):
    page, latest = dashboard
    got = browser.open_page(page, selectors=[".js-plotly-plot", ".main-svg", ".scatterlayer .point"],
                            wait_for=".main-svg")  # fmt: skip
    assert got.errors == []
    assert got.counts[".js-plotly-plot"] == 3  # 2 history charts + the tune frontier
    assert got.counts[".main-svg"] >= 3 and got.counts[".scatterlayer .point"] >= 10
    for name, ms in latest.items():
        assert f"{ms:.3f}" in got.text, name  # the latest medians, as the table prints them
    assert "4.32" in got.text and "0.6123" in got.text  # report.json table
    assert "onnxruntime-int8" in got.text and "2.7" in got.text  # tune frontier
    stddev, colours = browser.screenshot_spread(got.screenshot)
    assert stddev > 10 and colours > 100, (stddev, colours)  # not a blank or single-colour page
    (tmp_path / "dashboard.png").write_bytes(got.screenshot)


@needs_chromium
@pytest.mark.parametrize(
    ("breakage", "expect"),
    [
        ("cdn", "request failed"),  # the bundle from a CDN instead of inlined: offline, it cannot load
        ("js-error", "exception"),
    ],
)
def test_browser_check_catches_a_broken_page(dashboard, tmp_path, breakage, expect):
    page = dashboard[0].read_text()
    start, end = page.index("<script>"), page.index("</script>") + len("</script>")
    if breakage == "cdn":
        page = page[:start] + '<script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script>' + page[end:]
    else:
        page = page.replace("</body>", "<script>undefinedFunction()</script></body>")
    broken = tmp_path / "broken.html"
    broken.write_text(page)
    got = browser.open_page(broken, selectors=[".main-svg"], wait_for=".main-svg", timeout=10)
    assert any(e.startswith(expect) for e in got.errors), got.errors
    if breakage == "cdn":
        assert got.counts[".main-svg"] == 0
