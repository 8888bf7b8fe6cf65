"""The family matrix (issue 20): a YOLO11n, a YOLO12n and a YOLO26n of the baseline's 10 classes,
trained briefly from scratch on the synthetic dataset (detbench.model.families, cached), through
every route a user takes: ``detbench export`` of every format the weights have, the shipped suite
(equivalence, accuracy with both INT8 backends, latency smoke), ``detbench report --quick``,
``detbench tune --quick`` and ``detbench predict`` (reference and the tuned pipeline).

Each route runs as the real command in a child process, as a user would. Marked ``families``: not in
the default selection (training takes minutes per family on a cold cache); ``tox -e families``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from _support.processes import pytest_child_env
from detbench import paths
from detbench.model.families import FAMILIES, FamilySettings, family_weights

TIMEOUT_S = 1800  # a cold export of every format plus the suite on a 2-core machine stays well inside
# The first test of a family trains it on a cold cache (minutes) inside pytest-timeout's clock.
pytestmark = [pytest.mark.families, pytest.mark.slow, pytest.mark.timeout(2 * TIMEOUT_S)]

INT8 = ("onnxruntime-int8", "openvino-int8")
# The suite's tests of one backend that must run (pass, not skip) for each INT8 backend.
INT8_SUITE_TESTS = (
    "test_raw_head_matches_pytorch",
    "test_detections_match_pytorch",
    "test_detections_match_on_val_images",
    "test_accuracy_matches_reference",
    "test_latency_yolov8n_128_batch1",
)


@dataclass(frozen=True)
class Family:
    name: str
    weights: Path
    data: Path  # the synthetic set's data.yaml, the one it was trained on
    val_images: list[Path]  # the first few of its val split, for predict


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> Family:
    settings = FamilySettings(family=request.param)
    weights = family_weights(settings)  # trains on a cold cache, else reuses the cached best.pt
    root = paths.cache_root() / "datasets" / settings.synth().key()
    return Family(request.param, weights, root / "data.yaml", sorted((root / "images" / "val").iterdir())[:4])


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        env=pytest_child_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _detbench(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return _run("-m", "detbench.cli", *args, cwd=cwd)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_export_writes_every_format_the_weights_have(family: Family) -> None:
    """``detbench export`` exports each format of ``Workbench.formats()`` these weights have (onnx-end2end
    only for YOLO26's NMS-free head) and says why for each one they have not."""
    from detbench.runtimes.export import FORMATS
    from detbench.runtimes.workbench import Workbench

    have = {fmt for fmt, reason in Workbench.from_options(family.weights).formats().items() if reason is None}
    proc = _detbench("export", "--weights", family.weights)
    printed = dict(line.split("\t", 1) for line in _ok(proc).splitlines() if "\t" in line)
    assert set(printed) == have, proc.stderr
    assert all(Path(p).exists() for p in printed.values()), printed
    for fmt in set(FORMATS) - have:
        assert f"{fmt} not exported" in proc.stderr, proc.stderr
    assert ("onnx-end2end" in have) == (family.name == "yolo26n")


def test_shipped_suite_passes_with_both_int8_backends(family: Family, tmp_path: Path) -> None:
    """``pytest --pyargs detbench.suite --detbench-weights W --detbench-data D`` (D: the data.yaml it was
    trained on, as a user passes theirs): everything passes, and each INT8 backend ran its
    equivalence, accuracy and latency tests (passed, never skipped) within its own bounds."""
    junit = tmp_path / "suite.xml"
    proc = _run(
        "-m", "pytest", "--pyargs", "detbench.suite", "--detbench-weights", family.weights,
        "--detbench-data", family.data,
        "-p", "no:xdist", "-p", "no:cacheprovider", "--benchmark-disable", "-q", "-rs",
        f"--junitxml={junit}",
        cwd=tmp_path,
    )  # fmt: skip
    _ok(proc)
    cases = [c for c in ET.parse(junit).getroot().iter("testcase")]
    for backend in INT8:
        mine = {
            c.get("name", "").split("[")[0]: c for c in cases if c.get("name", "").endswith(f"[{backend}]")
        }
        missing = set(INT8_SUITE_TESTS) - set(mine)
        assert not missing, f"{backend}: not run: {sorted(missing)}"
        skipped = {
            n: c.find("skipped").get("message") for n, c in mine.items() if c.find("skipped") is not None
        }
        assert not skipped, f"{backend} skipped: {skipped}"


def test_report_quick_judges_both_int8_backends_pass(family: Family, tmp_path: Path) -> None:
    """``detbench report --quick``: exit 0, and each INT8 backend's tolerance and accuracy checks ran
    and passed against this model's own eager PyTorch."""
    out = tmp_path / "report"
    _ok(_detbench("report", "--quick", "--weights", family.weights, "--out", out, cwd=tmp_path))
    doc = json.loads((out / "report.json").read_text())
    assert doc["verdict"]["passed"], doc["verdict"]["failed_backends"]
    for backend in INT8:
        checks = {c["kind"]: c for c in doc["verdict"]["checks"] if c["backend"] == backend}
        assert {"tolerance", "accuracy"} <= set(checks), (backend, checks)
        assert checks["tolerance"]["passed"] and checks["accuracy"]["passed"], checks
    pytorch = next(b for b in doc["backends"] if b["name"] == "pytorch")
    assert pytorch["accuracy"]["mAP50"] > 0.1, (
        "the model detects too little for INT8's bounds to mean anything"
    )


def test_tune_quick_recommends_a_verified_configuration_and_predict_runs_it(
    family: Family, tmp_path: Path
) -> None:
    """``detbench tune --quick`` recommends a verified candidate; ``detbench predict`` reads four val
    images and finds objects with the reference pipeline and with the recommended one."""
    out = tmp_path / "tune"
    _ok(_detbench("tune", "--quick", "--weights", family.weights, "--out", out, cwd=tmp_path))
    tune = json.loads((out / "tune.json").read_text())
    assert tune["recommended"] is not None, [c["reason"] for c in tune["candidates"]]
    assert tune["candidates"][tune["recommended"]["index"]]["verified"]
    reference = ["--weights", str(family.weights)]
    recommended = ["--pipeline", "recommended", "--tune-json", str(out / "tune.json")]  # its weights
    for options in (reference, recommended):
        results = json.loads(_ok(_detbench("predict", *family.val_images, "--json", *options)))
        assert [r["error"] for r in results] == [None] * len(family.val_images), results
        assert any(r["detections"] for r in results), (options, results)
