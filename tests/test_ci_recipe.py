"""The GitHub Actions recipe (examples/github-actions/detbench.yml, docs/ci.md) works as written: its
``run:`` commands, in order, in a scratch workspace — main saves, a pull request compares and fails on
a slower model, the step summary gets the verdict table.

The commands run unchanged; only the workflow's env is set to small values (one latency benchmark,
this repository's dataset) and PYTEST_ADDOPTS adds the quick re-baselining plan and short rounds, as
a user's CI could. Between the jobs the workspace's cache folder stays, as actions/cache restores it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _support.processes import pytest_child_env
from detbench.verify.perturb import add_input_compute

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "github-actions" / "detbench.yml"
SELECT = "test_latency_yolov8n_128_batch1 and onnxruntime and not int8"


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def commands(job: str) -> list[str]:
    """The job's ``run:`` commands that run pytest or detbench, in order."""
    steps = workflow()["jobs"][job]["steps"]
    return [s["run"] for s in steps if "run" in s and re.match(r"\s*(pytest|detbench)\b", s["run"])]


def env(workspace: Path) -> dict[str, str]:
    """The workflow's env with ``${{ github.workspace }}`` filled in (no other expression is used)."""
    out = {}
    for key, value in workflow()["env"].items():
        text = str(value).replace("${{ github.workspace }}", str(workspace))
        assert "${{" not in text, f"env {key}: an expression this test cannot fill in: {text}"
        out[key] = text
    return out


class TestShape:
    """What the recipe promises, read from the file (no timing)."""

    def test_main_saves_and_pull_requests_compare_with_the_gate(self) -> None:
        (save,) = commands("main")
        for option in ("--benchmark-save-data", "--benchmark-autosave", "--detbench-history-tag main"):
            assert option in save
        (compare,) = commands("pull-request")
        assert "--benchmark-compare" in compare and "--detbench-compare-fail" in compare
        assert "--benchmark-save-data" in compare  # the unpaired fallback needs the raw rounds

    def test_both_jobs_cache_the_folder_holding_history_and_saved_runs(self) -> None:
        spec = workflow()
        paths = set()
        for job in ("main", "pull-request"):
            caches = [
                s for s in spec["jobs"][job]["steps"] if str(s.get("uses", "")).startswith("actions/cache")
            ]
            assert caches, job
            paths |= {c["with"]["path"] for c in caches}
        (path,) = paths
        e = env(Path("/ws"))
        assert e["DETBENCH_CACHE"] == f"/ws/{path}" and e["BENCHMARKS"].startswith(e["DETBENCH_CACHE"])
        # the pull request restores by prefix the key main saves under
        main_key = next(
            s["with"]["key"]
            for s in spec["jobs"]["main"]["steps"]
            if s.get("uses", "").startswith("actions/cache/save")
        )
        (restore,) = [
            s for s in spec["jobs"]["pull-request"]["steps"] if "cache/restore" in s.get("uses", "")
        ]
        assert main_key.startswith(restore["with"]["restore-keys"])


@pytest.mark.timing
def test_workflow_commands_run_as_written(workbench, dataset_yaml: Path, tmp_path: Path) -> None:
    """main's command exits 0 and keeps its run; the pull request's exits 1 on a slower ONNX (+40
    MatMuls, paired in the job) with the verdict table in $GITHUB_STEP_SUMMARY, and 0 on a copy."""
    workspace = tmp_path / "ws"
    (workspace / "deploy").mkdir(parents=True)
    onnx = workbench.artifact("onnxruntime")
    add_input_compute(onnx, tmp_path / "slow.onnx", matmuls=40, width=64)
    base = {
        **pytest_child_env(),
        **env(workspace),
        "BENCH_K": SELECT,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTEST_ADDOPTS": (
            f"-p no:cacheprovider -p no:xdist --detbench-data {dataset_yaml} "
            "--detbench-rebaseline-plan quick --benchmark-max-time=0.2 --benchmark-min-rounds=15"
        ),
    }
    for key in ("DETBENCH_HISTORY", "DETBENCH_HISTORY_TAG", "GITHUB_STEP_SUMMARY"):
        base.pop(key, None)

    def job(name: str, model: Path, summary: Path | None = None) -> subprocess.CompletedProcess:
        shutil.copy2(model, workspace / "deploy" / "model.onnx")
        (command,) = commands(name)
        extra = {"GITHUB_STEP_SUMMARY": str(summary)} if summary else {}
        return subprocess.run(
            ["bash", "-e", "-c", command],
            cwd=workspace,
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = job("main", onnx)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert list((workspace / ".detbench-cache" / "benchmarks").rglob("0001_*.json"))

    summary = tmp_path / "summary.md"
    out = job("pull-request", tmp_path / "slow.onnx", summary)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    text = summary.read_text()
    assert text.startswith("### detbench gate (`--detbench-compare-fail`)")
    assert "| paired in this job | **regression** |" in text and "**regression in**" in text

    out = job("pull-request", onnx, tmp_path / "same.md")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "| paired in this job | " in (tmp_path / "same.md").read_text()
