"""The pytest plugin and the packaging: entry point, shipped suite, package data, no import side effects."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import detbench
from detbench import paths
from detbench.plugin import MARKERS
from detbench.plugin.fixtures import backend_params
from detbench.runtimes.backends import REGISTRY

ENV_KEYS = ("YOLO_OFFLINE", "YOLO_CONFIG_DIR", "YOLO_VERBOSE", "MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR")


def _clean_env() -> dict[str, str]:
    """This process's environment without the variables detbench sets, as a fresh shell has it."""
    return {k: v for k, v in os.environ.items() if k not in ENV_KEYS}


def test_plugin_is_registered_under_pytest11() -> None:
    """An installed detbench brings its plugin to every pytest run: the entry point names the module."""
    eps = importlib.metadata.entry_points(group="pytest11")
    assert {ep.name: ep.value for ep in eps}.get("detbench") == "detbench.plugin"


def test_plugin_is_loaded_in_this_session(pytestconfig: pytest.Config) -> None:
    """The options this suite runs on come from the plugin, not from a conftest."""
    plugin = pytestconfig.pluginmanager.get_plugin("detbench")
    assert plugin is not None and plugin.__name__ == "detbench.plugin"


def test_every_marker_is_described(pytestconfig: pytest.Config) -> None:
    """--strict-markers accepts our markers because the plugin registers each with a description."""
    lines = pytestconfig.getini("markers")
    for name in MARKERS:
        assert any(line.startswith(f"{name}: ") and len(line) > len(name) + 10 for line in lines), name


def test_backend_params_are_the_registry() -> None:
    assert [p.values[0] for p in backend_params()] == list(REGISTRY)


def test_import_changes_no_environment_variable() -> None:
    """``import detbench`` (and its plugin module) leaves os.environ as it was: a user's test session
    keeps its own ultralytics settings until detbench takes control."""
    code = (
        "import json, os; before = dict(os.environ); import detbench, detbench.plugin, detbench.cli; "
        "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == {}


def test_cli_entry_configures_ultralytics_offline(tmp_path: Path) -> None:
    """Where detbench takes control (the CLI), ultralytics is kept offline and inside our cache."""
    code = (
        "import os; from detbench.cli import main; main(['--help']); "
        "print(os.environ['YOLO_OFFLINE'], os.environ['YOLO_CONFIG_DIR'])"
    )
    env = {**_clean_env(), paths.CACHE_ENV: str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    offline, config_dir = out.stdout.splitlines()[-1].split()
    assert offline == "1" and Path(config_dir) == tmp_path.resolve() / "ultralytics"


def test_package_data_holds_the_baseline_budgets_and_goldens() -> None:
    """What the CLI and the suite read at run time is inside the package, found without the checkout."""
    root = Path(detbench.__file__).parent / "fixtures"
    assert root == paths.FIXTURES
    for rel in ("baseline/best.pt", "baseline/provenance.json", "budgets.toml", "golden/golden.npz"):
        assert (root / rel).is_file(), rel


def test_shipped_suite_collects_from_outside_the_checkout(tmp_path: Path) -> None:
    """``pytest --pyargs detbench.suite`` from an unrelated directory finds the suite and its options."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "detbench.suite",
            "--co",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    for name in REGISTRY:
        assert f"test_raw_head_matches_pytorch[{name}]" in out.stdout
    assert "test_latency_yolov8n_128_batch1" in out.stdout
    assert "test_preprocess_variant_gives_the_reference_input[lean]" in out.stdout  # test_pipelines


def test_timing_tests_are_skipped_with_a_reason_under_xdist(tmp_path: Path) -> None:
    """A ``timing`` test run under ``-n 2`` is skipped and says why; the correctness tests still run."""
    (tmp_path / "test_t.py").write_text(
        "import pytest\n\n@pytest.mark.timing\ndef test_timed():\n    pass\n\ndef test_plain():\n    pass\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-rs", "-p", "no:cacheprovider", "test_t.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 passed, 1 skipped" in out.stdout
    assert "timing runs serially" in out.stdout


@pytest.mark.equivalence
def test_shipped_suite_floors_detections_on_the_users_images(dataset, tmp_path: Path) -> None:
    """With --detbench-data, the shipped suite draws the user's val images too and the "had
    detections" floor passes on them (here: a few synthetic val images the baseline detects in)."""
    import shutil

    from detbench.data.datasets import data_yaml_text

    for sub in ("images/val", "labels/val", "images/train", "labels/train"):
        (tmp_path / "user" / sub).mkdir(parents=True)
    for image in dataset.images("val")[:4]:
        shutil.copy(image, tmp_path / "user" / "images" / "val" / image.name)
        shutil.copy(dataset.label_for(image), tmp_path / "user" / "labels" / "val")
    data_yaml = tmp_path / "user" / "data.yaml"
    data_yaml.write_text(data_yaml_text(dataset.names))
    out = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "--pyargs", "detbench.suite.test_equivalence"),
            *("-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--hypothesis-show-statistics"),
            *("--detbench-data", str(data_yaml)),
            *("-k", "(detections_match_pytorch or had_detections) and onnxruntime and not int8"),
        ],
        cwd=tmp_path,
        env={**os.environ, "HYPOTHESIS_PROFILE": "ci", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 passed" in out.stdout
    assert "reference detections on your val images" in out.stdout, "no example came from the user's images"


def _item(**params: str):
    from types import SimpleNamespace

    return SimpleNamespace(callspec=SimpleNamespace(params=params)) if params else SimpleNamespace()


def test_detbench_backends_keeps_the_chosen_backends_and_tests_of_none() -> None:
    """--detbench-backends deselects the tests of other backends (``backend`` and the benchmarks'
    ``backend_640``); tests of no backend and other parameters stay."""
    from detbench.plugin import _other_backend

    chosen = ("onnxruntime",)
    assert not _other_backend(_item(backend="onnxruntime"), chosen)
    assert _other_backend(_item(backend="openvino"), chosen)
    assert _other_backend(_item(backend_640="onnxruntime-int8"), chosen)
    assert not _other_backend(_item(backend_640="onnxruntime"), chosen)
    assert not _other_backend(_item(variant="opencv"), chosen)
    assert not _other_backend(_item(), chosen)


def test_detbench_backends_refuses_an_unknown_name(tmp_path: Path) -> None:
    """An unknown name is a usage error naming the registered ones, before anything is collected."""
    args = ["--pyargs", "detbench.suite", "-p", "no:cacheprovider", "--collect-only", "-q"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--detbench-backends", "onnxruntime,onnx"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "unknown backend onnx; registered: pytorch, " in proc.stderr
    assert "collected" not in proc.stdout
