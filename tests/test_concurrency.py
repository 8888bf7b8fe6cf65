"""Real exports and dataset generation under concurrency and SIGKILL: one whole result, none half reused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from _support.processes import sigkill, spawn_python, wait_for
from detbench._fs import sha256_path
from detbench.data.datasets import SynthConfig, load_dataset, tree_sha256, write_synthetic
from detbench.runtimes.backends import create
from detbench.runtimes.cache import ArtifactCache
from detbench.runtimes.export import Exporter, ExportSettings

pytestmark = pytest.mark.timeout(180)


def _spawn(tmp_path: Path, code: str, *args: object) -> subprocess.Popen:
    return spawn_python(tmp_path / "cache", code, *args)


def _race(tmp_path: Path, code: str, *args: object) -> list[dict]:
    """Start two children, release them together once both are ready, return their JSON results."""
    go = tmp_path / "go"
    readies = [tmp_path / f"ready-{i}" for i in range(2)]
    procs = [_spawn(tmp_path, code, ready, go, *args) for ready in readies]
    try:
        for proc, ready in zip(procs, readies):
            wait_for(ready, proc)
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=150)
            assert proc.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                sigkill(proc)


def _strays(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name.startswith((".tmp-", ".trash-"))]


_BARRIER = """
    import json, sys, time
    from pathlib import Path

    ready, go = Path(sys.argv[1]), Path(sys.argv[2])

    def wait_for_go():
        ready.touch()
        while not go.exists():
            time.sleep(0.005)
"""

_EXPORT_RACE = (
    _BARRIER
    + """
    from detbench.runtimes.cache import ArtifactCache
    from detbench.runtimes.export import Exporter, ExportSettings

    weights, root, imgsz = sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
    exporter = Exporter(weights, ExportSettings(imgsz=imgsz), cache=ArtifactCache(root))
    wait_for_go()
    art = exporter.get("torchscript")
    print(json.dumps({"sha256": art.sha256, "path": str(art.path), "builds": exporter.cache.builds,
                      "hits": exporter.cache.hits}))
"""
)


def test_two_processes_export_once(tmp_path: Path, baseline: Path, model_info) -> None:
    """Two real TorchScript exports of the same weights started together: one build, one entry, one hash."""
    root = tmp_path / "artifacts"
    results = _race(tmp_path, _EXPORT_RACE, baseline, root, model_info.imgsz)
    assert sorted((r["builds"], r["hits"]) for r in results) == [(0, 1), (1, 0)]
    assert len({r["sha256"] for r in results}) == 1
    assert len({r["path"] for r in results}) == 1
    entries = [p for p in (root / "torchscript").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(entries) == 1
    assert not _strays(root)
    exporter = Exporter(baseline, ExportSettings(imgsz=model_info.imgsz), cache=ArtifactCache(root))
    found = exporter.cache.lookup("torchscript", exporter.fields("torchscript"))
    assert found is not None
    assert found.sha256 == results[0]["sha256"] == sha256_path(found.path)
    backend = create("torchscript")
    backend.load(found.path)
    assert backend.spec.height == model_info.imgsz


_KILLED_EXPORT = """
    import sys, time
    from pathlib import Path

    import detbench.runtimes.export as export
    from detbench.runtimes.cache import ArtifactCache

    weights, root, imgsz, marker = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    real = export.build_onnx

    def half_then_hang(weights, dest, settings):
        real(weights, dest, settings)
        data = dest.read_bytes()
        dest.write_bytes(data[: len(data) // 2])  # as if the writer were half-way through
        marker.touch()
        time.sleep(120)

    export.build_onnx = half_then_hang
    export.Exporter(weights, export.ExportSettings(imgsz=imgsz), cache=ArtifactCache(root)).get("onnx")
"""


def test_killed_export_is_not_reused(tmp_path: Path, baseline: Path, model_info) -> None:
    """SIGKILL in the middle of a real ONNX export leaves no entry; the next export builds a good one."""
    root, marker = tmp_path / "artifacts", tmp_path / "half-written"
    proc = _spawn(tmp_path, _KILLED_EXPORT, baseline, root, model_info.imgsz, marker)
    try:
        wait_for(marker, proc)
    finally:
        if proc.poll() is None:
            sigkill(proc)
    halves = list(root.rglob("model.onnx"))
    assert halves, "not killed mid-build"
    assert all(p.parent.name.startswith(".tmp-") for p in halves)

    exporter = Exporter(baseline, ExportSettings(imgsz=model_info.imgsz), cache=ArtifactCache(root))
    assert exporter.cache.lookup("onnx", exporter.fields("onnx")) is None
    art = exporter.get("onnx")
    assert (exporter.cache.builds, exporter.cache.hits) == (1, 0)
    assert art.sha256 not in {sha256_path(p) for p in halves if p.exists()}
    backend = create("onnxruntime")
    backend.load(art.path)
    assert backend.spec.height == model_info.imgsz
    assert not _strays(root), "the killed build's temp dir was not swept"


SMALL = SynthConfig(train=4, val=2, imgsz=64, seed=7)

_DATASET_RACE = (
    _BARRIER
    + """
    import detbench.model.baseline as baseline
    from detbench.data.datasets import SynthConfig

    counter, cfg = Path(sys.argv[3]), SynthConfig(**json.loads(sys.argv[4]))
    real = baseline.write_synthetic

    def counted(out, cfg):
        with open(counter, "a") as f:
            f.write("generated\\n")
        time.sleep(0.5)  # widen the window in which a second writer could interleave
        return real(out, cfg)

    baseline.write_synthetic = counted
    wait_for_go()
    print(json.dumps({"data_yaml": str(baseline.synthetic_dataset(cfg))}))
"""
)


def _assert_complete(data_yaml: Path, cfg: SynthConfig, tmp_path: Path) -> None:
    ds = load_dataset(data_yaml)
    assert (len(ds.images("train")), len(ds.images("val"))) == (cfg.train, cfg.val)
    assert all(ds.label_for(p).is_file() for p in ds.images("train") + ds.images("val"))
    reference = write_synthetic(tmp_path / "reference", cfg).parent
    assert tree_sha256(data_yaml.parent) == tree_sha256(reference)


def test_two_processes_generate_one_dataset(tmp_path: Path) -> None:
    """synthetic_dataset() run by two processes at once writes the dataset once, completely."""
    counter = tmp_path / "generated.txt"
    results = _race(tmp_path, _DATASET_RACE, counter, json.dumps(SMALL.__dict__))
    assert len({r["data_yaml"] for r in results}) == 1
    assert counter.read_text().splitlines() == ["generated"]
    datasets = tmp_path / "cache" / "datasets"
    assert [p.name for p in datasets.iterdir() if p.is_dir()] == [SMALL.key()]
    _assert_complete(Path(results[0]["data_yaml"]), SMALL, tmp_path)


_KILLED_DATASET = """
    import json, sys, time
    from pathlib import Path

    import detbench.model.baseline as baseline
    from detbench.data.datasets import SynthConfig

    marker, cfg = Path(sys.argv[1]), SynthConfig(**json.loads(sys.argv[2]))

    def partial(out, cfg):
        (out / "images" / "train").mkdir(parents=True)
        (out / "images" / "train" / "train_00000.png").write_bytes(b"half")
        marker.touch()
        time.sleep(120)

    baseline.write_synthetic = partial
    baseline.synthetic_dataset(cfg)
"""


def test_killed_dataset_generation_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A generator killed half-way leaves no dataset that a later call returns; that call writes it whole."""
    from detbench.model.baseline import synthetic_dataset

    marker = tmp_path / "half-written"
    proc = _spawn(tmp_path, _KILLED_DATASET, marker, json.dumps(SMALL.__dict__))
    try:
        wait_for(marker, proc)
    finally:
        if proc.poll() is None:
            sigkill(proc)
    datasets = tmp_path / "cache" / "datasets"
    assert not (datasets / SMALL.key()).exists()
    monkeypatch.setenv("DETBENCH_CACHE", str(tmp_path / "cache"))
    _assert_complete(synthetic_dataset(SMALL), SMALL, tmp_path)
