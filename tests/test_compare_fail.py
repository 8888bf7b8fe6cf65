"""``pytest --benchmark-compare --detbench-compare-fail``: the gate on the pytest-benchmark route."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detbench.verify.perturb import add_input_compute

pytestmark = pytest.mark.timing

REPO = Path(__file__).resolve().parents[1]
# ~1.3 % each on one host (scripts/calibrate_gate.py), less where the model's own kernels are slower
# relative to a 64-wide MatMul (a CI run saw the 75-MatMul candidate fall short of 60 %): 300 make the
# candidate several times slower on every host measured, far above the session drift that
# --detbench-compare-min-effect (0.6) allows for between two sessions.
SLOW_MATMULS = 300
BENCH = """
import os

import numpy as np
import onnxruntime as ort


def test_latency_onnx(benchmark):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(os.environ["ONNX_UNDER_TEST"], opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    benchmark.pedantic(session.run, args=(None, {"images": x}), rounds=80, warmup_rounds=5)
"""


@pytest.fixture(scope="module")
def project(workbench, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch project: one ONNX benchmark, the repository's conftest (the option), three artifacts."""
    root = tmp_path_factory.mktemp("bench-project")
    (root / "test_bench.py").write_text(BENCH)
    shutil.copy2(REPO / "conftest.py", root / "conftest.py")
    onnx = workbench.artifact("onnxruntime")
    shutil.copy2(onnx, root / "a.onnx")
    shutil.copy2(onnx, root / "a_again.onnx")
    add_input_compute(onnx, root / "slow.onnx", matmuls=SLOW_MATMULS, width=64)
    return root


def _pytest(root: Path, onnx: str, *extra: str, save_data: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ONNX_UNDER_TEST": str(root / onnx)}
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "test_bench.py",
        "--benchmark-enable",
    ]
    argv += ["--benchmark-save-data"] if save_data else []
    argv += [f"--benchmark-storage=file://{root}/.benchmarks"]
    return subprocess.run([*argv, *extra], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_a_a_passes_and_a_slowed_artifact_fails(project: Path) -> None:
    """Saved run 1 = baseline; run 2 (a copy, A/A) passes the gate; run 3 (2x slower ONNX) exits 1."""
    first = _pytest(project, "a.onnx", "--benchmark-autosave")
    assert first.returncode == 0, first.stdout + first.stderr
    same = _pytest(project, "a_again.onnx", "--benchmark-compare=0001", "--detbench-compare-fail")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "detbench gate: no regression" in same.stdout
    slow = _pytest(project, "slow.onnx", "--benchmark-compare=0001", "--detbench-compare-fail")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert "regression in test_bench.py::test_latency_onnx" in slow.stdout


def test_compared_run_without_raw_timings_fails_with_the_fix(project: Path) -> None:
    """A compared run saved without --benchmark-save-data is a failure that names the option."""
    bare = _pytest(project, "a.onnx", "--benchmark-autosave", save_data=False)
    assert bare.returncode == 0, bare.stdout + bare.stderr
    saved = sorted((project / ".benchmarks").rglob("*.json"))[-1].name.split("_")[0]
    out = _pytest(project, "a.onnx", f"--benchmark-compare={saved}", "--detbench-compare-fail")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "--benchmark-save-data" in out.stdout
