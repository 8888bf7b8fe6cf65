"""The CI route of issue 19 end to end: a baseline session saved, then a new process comparing with
``--benchmark-compare --detbench-compare-fail``, re-timing the saved artifact in this job.

Each comparing session is a fresh ``pytest --pyargs detbench.suite`` process on the ONNX Runtime
latency benchmark, its own DETBENCH_CACHE (a copy of the baseline session's, history and artifacts
included) and ``--detbench-rebaseline-plan quick`` (short blocks: these tests check the route, the
calibration of the verdict is scripts/calibrate_gate.py's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detbench.runtimes.identity import artifact_content
from detbench.verify.perturb import add_input_compute

pytestmark = pytest.mark.timing

SELECT = "test_latency_yolov8n_128_batch1 and onnxruntime and not int8"
BENCH = "test_latency_yolov8n_128_batch1[onnxruntime]"
# +76 % measured through this route on the development VM (README "In CI"): decisive in one run.
SLOW_MATMULS = 40


def _renamed(src: Path, dst: Path) -> Path:
    """The same graph with one more metadata entry: other bytes (another sha256), the same speed."""
    import onnx

    model = onnx.load(str(src))
    entry = model.metadata_props.add()
    entry.key, entry.value = "detbench_test", "renamed"
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def project(workbench, dataset_yaml: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A scratch directory with the artifacts, and a baseline session saved from ``a.onnx``."""
    root = tmp_path_factory.mktemp("ci-route")
    onnx = workbench.artifact("onnxruntime")
    shutil.copy2(onnx, root / "a.onnx")
    shutil.copy2(onnx, root / "a_again.onnx")
    _renamed(onnx, root / "a_renamed.onnx")
    add_input_compute(onnx, root / "slow.onnx", matmuls=SLOW_MATMULS, width=64)
    info = {"root": root, "data": dataset_yaml, "cache": root / "cache"}
    saved = _pytest(info, info["cache"], "a.onnx", "--benchmark-save-data", "--benchmark-autosave")
    assert saved.returncode == 0, saved.stdout[-3000:] + saved.stderr[-3000:]
    return info


def _pytest(project: dict, cache: Path, onnx: str, *extra: str, env: dict | None = None):
    root = project["root"]
    argv = [
        *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"),
        *("--pyargs", "detbench.suite", "-k", SELECT),
        *("--benchmark-enable", "--benchmark-max-time=0.2", "--benchmark-min-rounds=15"),
        f"--benchmark-storage=file://{root}/.benchmarks",
        *("--detbench-data", str(project["data"]), "--detbench-artifact", f"onnxruntime={root / onnx}"),
        "--detbench-rebaseline-plan=quick",
    ]
    return subprocess.run(
        [*argv, *extra],
        cwd=root,
        env={**os.environ, "DETBENCH_CACHE": str(cache), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _compare(project: dict, tmp_path: Path, onnx: str, *extra: str, env: dict | None = None):
    """A new process comparing ``onnx`` with the saved run, on a copy of the baseline's cache."""
    cache = tmp_path / "cache"
    shutil.copytree(project["cache"], cache)
    return _pytest(
        project, cache, onnx, "--benchmark-compare=0001", "--detbench-compare-fail", *extra, env=env
    )


def _stored(cache: Path, onnx: Path) -> list[Path]:
    """The local history's files of the artifact at ``onnx``: its manifest and its one blob."""
    sha = artifact_content(onnx)[0].sha256
    folder = cache / "history" / "artifacts" / sha[:2]
    return [folder / f"{sha}.json", folder / sha]


def _line(out: subprocess.CompletedProcess) -> str:
    """The benchmark's verdict line in the gate's section."""
    heads = (f"{BENCH} (paired in this job)", f"{BENCH} (unpaired across sessions")
    lines = [line for line in out.stdout.splitlines() if any(h in line for h in heads)]
    assert len(lines) == 1, out.stdout[-4000:] + out.stderr[-3000:]
    return lines[0]


def test_identical_artifact_is_paired_and_passes(project: dict, tmp_path: Path) -> None:
    """(a) A copy of the saved artifact: re-timed in this job, not a regression, exit 0."""
    out = _compare(project, tmp_path, "a_again.onnx")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    line = _line(out)
    assert "(paired in this job): " in line and ": regression:" not in line


def test_slowed_artifact_is_a_paired_regression(project: dict, tmp_path: Path) -> None:
    """(b, e) A real slower ONNX (+40 input-dependent MatMuls): restored from the history, timed beside
    the candidate, a regression naming ratio and interval, exit 1; the step summary gets the table."""
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    out = _compare(project, tmp_path, "slow.onnx", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert out.returncode == 1, out.stdout[-4000:] + out.stderr[-3000:]
    line = _line(out)
    assert "(paired in this job): regression: candidate/baseline 1." in line
    assert "% CI " in line and "after" in line
    assert f"detbench gate: regression in {line.split(' (paired')[0]}" in out.stdout
    text = summary.read_text()
    assert text.startswith("earlier step\n### detbench gate")
    assert "| paired in this job | **regression** |" in text and "**regression in**" in text


def test_deleted_artifact_falls_back_to_the_unpaired_gate(project: dict, tmp_path: Path) -> None:
    """(c) The baseline's artifact pruned from the history: unpaired across sessions, saying why."""
    cache = tmp_path / "cache"
    shutil.copytree(project["cache"], cache)
    for path in _stored(cache, project["root"] / "a.onnx"):
        path.unlink()
    out = _pytest(project, cache, "a_renamed.onnx", "--benchmark-compare=0001", "--detbench-compare-fail")
    assert out.returncode in (0, 1), out.stdout[-4000:] + out.stderr[-3000:]
    line = _line(out)
    assert "(unpaired across sessions; why: artifact missing: the baseline's artifact is not in" in line
    assert "timing the saved run's artifact" not in out.stdout


def test_tampered_artifact_is_refused_and_not_timed(project: dict, tmp_path: Path) -> None:
    """(d) The stored baseline's bytes replaced by the slow model's: refused by sha256, never timed."""
    cache = tmp_path / "cache"
    shutil.copytree(project["cache"], cache)
    _, blob = _stored(cache, project["root"] / "a.onnx")
    blob.write_bytes((project["root"] / "slow.onnx").read_bytes())
    out = _pytest(project, cache, "a_renamed.onnx", "--benchmark-compare=0001", "--detbench-compare-fail")
    assert out.returncode in (0, 1), out.stdout[-4000:] + out.stderr[-3000:]
    line = _line(out)
    assert "(unpaired across sessions; why:" in line and "refused it, not timed" in line
    assert "changed outside detbench" in line
    assert "timing the saved run's artifact" not in out.stdout
