"""`detbench gate --history` end to end (issue 19 item 3): runs saved through the plugin route, with
real ONNX artifacts, into the local file history and PostgreSQL at once, then gated in this process.

Three ``pytest --pyargs detbench.suite`` sessions on the ONNX Runtime latency benchmark, each a new
process: main's (``a.onnx``, tagged ``main``), an identical copy (tagged ``pr-same``) and a slower
model (tagged ``pr-slow``, the newest). The gate re-times both runs' stored artifacts with the quick
sequential plan (these tests check the route; the verdict's calibration is scripts/calibrate_gate.py's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _support.processes import pytest_child_env
from detbench.cli import main
from detbench.verify.perturb import add_input_compute

pytestmark = pytest.mark.timing

SELECT = "test_latency_yolov8n_128_batch1 and onnxruntime and not int8"
BENCH = "test_latency_yolov8n_128_batch1[onnxruntime]"
SLOW_MATMULS = 40  # +76 % through the plugin route (README "In CI"): decisive with the quick plan


@pytest.fixture(scope="module")
def saved(workbench, dataset_yaml: Path, tmp_path_factory: pytest.TempPathFactory, request) -> dict:
    """The three sessions, saved to ``<cache>/history`` and, when initdb is here, to PostgreSQL."""
    from _support import postgres

    root = tmp_path_factory.mktemp("gate-route")
    onnx = workbench.artifact("onnxruntime")
    shutil.copy2(onnx, root / "a.onnx")
    shutil.copy2(onnx, root / "a_again.onnx")
    add_input_compute(onnx, root / "slow.onnx", matmuls=SLOW_MATMULS, width=64)
    url = None
    if postgres.missing_reason() is None:
        url = request.getfixturevalue("postgres_cluster").create_database(f"gate_route_{os.getpid()}")
    cache = root / "cache"
    for onnx_name, tag in [("a.onnx", "main"), ("a_again.onnx", "pr-same"), ("slow.onnx", "pr-slow")]:
        argv = [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"),
            *("--pyargs", "detbench.suite", "-k", SELECT),
            *("--benchmark-enable", "--benchmark-max-time=0.2", "--benchmark-min-rounds=15"),
            *(
                "--benchmark-save-data",
                "--benchmark-autosave",
                f"--benchmark-storage=file://{root}/.benchmarks",
            ),
            *("--detbench-data", str(dataset_yaml), "--detbench-artifact", f"onnxruntime={root / onnx_name}"),
            f"--detbench-history-tag={tag}",
            *([f"--detbench-history={url}"] if url else []),
        ]
        env = pytest_child_env(DETBENCH_CACHE=str(cache))
        env.pop("DETBENCH_HISTORY", None)
        out = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {"files": str(cache / "history"), "postgres": url}


@pytest.fixture(params=["files", "postgres"])
def history(request, saved: dict) -> str:
    if saved[request.param] is None:
        pytest.skip("PostgreSQL server binaries (initdb) not found")
    return saved[request.param]


def _gate(capsys, history: str, *extra: str) -> tuple[int, str]:
    code = main(["gate", "--history", history, "--rebaseline-plan", "quick", *extra])
    return code, capsys.readouterr().out


def _line(out: str) -> str:
    lines = [line for line in out.splitlines() if f"::{BENCH} (" in line]
    assert len(lines) == 1, out[-4000:]
    return lines[0]


def test_gate_history_pairs_with_main(history: str, capsys, monkeypatch, tmp_path: Path) -> None:
    """Slower candidate: paired regression against main's run, exit 1, step summary written; the
    identical copy passes; main's artifact pruned: the unpaired history gate, saying why."""
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.delenv("DETBENCH_HISTORY", raising=False)

    code, out = _gate(capsys, history)  # the newest run: pr-slow
    line = _line(out)
    assert code == 1, out[-4000:]
    assert "(paired in this job): regression: candidate/baseline 1." in line and "% CI " in line
    assert f"detbench gate: regression in {line.split(' (paired')[0]}" in out
    text = summary.read_text()
    assert (
        text.startswith("### detbench gate (`--history`)")
        and "| paired in this job | **regression** |" in text
    )

    code, out = _gate(capsys, history, "--candidate", "pr-same")
    line = _line(out)
    assert code == 0, out[-4000:]
    assert "(paired in this job): " in line and ": regression:" not in line

    assert main(["history", "prune", "--history", history, "--keep-runs", "1"]) == 0  # keeps pr-slow's only
    assert "removed 1 artifact(s)" in capsys.readouterr().out
    code, out = _gate(capsys, history)
    line = _line(out)
    assert code in (0, 1), out[-4000:]
    assert (
        f"{BENCH} (unpaired across sessions; why: artifact missing: the baseline's artifact is not in" in line
    )
    assert "timing the saved run's artifact" not in out
