"""What a run ran travels with it: the identity record, and the artifacts the file store keeps."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from _support.processes import pytest_child_env
from _support.runs import benchmark_run, identity, run_with
from detbench._fs import sha256_path, tree_sha256
from detbench.cli import _Parser, history
from detbench.errors import StoredArtifactError
from detbench.history import artifacts as arts
from detbench.history.file import FileStore
from detbench.history.recorder import RunRecorder
from detbench.runtimes.identity import IDENTITY_KEY, ArtifactContent, BenchIdentity, artifact_content


def save(store: FileStore, doc: dict) -> str:
    bundles, refused = arts.collect(doc)
    return store.save(doc, artifacts=bundles, refused=refused)


@pytest.fixture
def onnx(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(b"an onnx graph" * 100)
    return path


@pytest.fixture
def ir(tmp_path: Path) -> Path:
    folder = tmp_path / "src" / "model_openvino"
    folder.mkdir(parents=True)
    (folder / "model.xml").write_text("<net/>")
    (folder / "model.bin").write_bytes(b"\0\1\2" * 50)
    return folder


class TestIdentity:
    def test_json_round_trip_and_malformed_refused(self) -> None:
        value = identity("a" * 64)
        assert BenchIdentity.from_json(json.loads(json.dumps(value))).to_json() == value
        with pytest.raises(ValueError, match="threads"):
            BenchIdentity.from_json({**value, "threads": "one"})

    def test_artifact_sha256_is_the_file_or_folder_digest(self, onnx: Path, ir: Path) -> None:
        """A file's sha256 is sha256sum's, a folder's the export cache's (sha256_path)."""
        assert artifact_content(onnx)[0].sha256 == hashlib.sha256(onnx.read_bytes()).hexdigest()
        assert artifact_content(ir)[0].sha256 == sha256_path(ir)
        xml = artifact_content(ir / "model.xml")[0]  # an IR named by its .xml brings its .bin
        assert [f.path for f in xml.files] == ["model.bin", "model.xml"] and xml.entry == "model.xml"

    def test_manifest_that_does_not_add_up_is_refused(self, ir: Path) -> None:
        content = artifact_content(ir)[0].to_json()
        ArtifactContent.from_json(content)
        content["files"][0]["sha256"] = "f" * 64
        with pytest.raises(ValueError, match="add up"):
            ArtifactContent.from_json(content)
        escape = {**content, "files": [{**content["files"][0], "path": "../x"}]}
        escape["sha256"] = tree_sha256({"../x": "f" * 64})
        with pytest.raises(ValueError, match="unsafe"):
            ArtifactContent.from_json(escape)


class TestFileStoreArtifacts:
    def test_round_trip_file_and_folder(self, tmp_path: Path, onnx: Path, ir: Path) -> None:
        fs = FileStore(tmp_path / "h")
        save(fs, run_with({"t::a[onnxruntime]": onnx, "t::b[openvino]": ir}))
        (run,) = fs.load().runs
        assert all(n.stored for n in run.artifacts) and len(run.artifacts) == 2
        got = fs.get_artifact(artifact_content(onnx)[0].sha256, tmp_path / "out1")
        assert got.name == "model.onnx" and got.read_bytes() == onnx.read_bytes()
        folder = fs.get_artifact(sha256_path(ir), tmp_path / "out2")
        assert sha256_path(folder) == sha256_path(ir)

    def test_each_artifact_is_kept_once(self, tmp_path: Path, onnx: Path) -> None:
        fs = FileStore(tmp_path / "h")
        copy = tmp_path / "copy.onnx"
        copy.write_bytes(onnx.read_bytes())
        save(fs, run_with({"t::a[onnxruntime]": onnx}))
        save(fs, run_with({"t::a[onnxruntime]": copy}, seed=1))
        blobs = [p for p in (tmp_path / "h" / "artifacts").rglob("*") if p.is_file()]
        assert len(blobs) == 2  # one file, one manifest, for two runs
        assert len(fs.load().runs) == 2

    @pytest.mark.parametrize("part", ["file", "manifest"])
    def test_tampered_artifact_is_refused_and_not_handed_out(self, tmp_path: Path, onnx: Path, part) -> None:
        fs = FileStore(tmp_path / "h")
        save(fs, run_with({"t::a[onnxruntime]": onnx}))
        sha = artifact_content(onnx)[0].sha256
        if part == "file":
            fs._blob(sha).write_bytes(b"an onnx graph, edited")
        else:
            doc = json.loads(fs._manifest(sha).read_text())
            doc["files"][0]["size"] += 1
            doc["files"][0]["sha256"] = "e" * 64
            fs._manifest(sha).write_text(json.dumps(doc))
        with pytest.raises(StoredArtifactError, match=sha):
            fs.get_artifact(sha, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]

    def test_missing_artifact_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(StoredArtifactError, match="not stored"):
            FileStore(tmp_path).get_artifact("a" * 64, tmp_path / "out")

    def test_over_the_cap_is_not_stored_and_the_run_says_so(self, tmp_path: Path, onnx: Path) -> None:
        fs = FileStore(tmp_path / "h", max_artifact_bytes=100)
        save(fs, run_with({"t::a[onnxruntime]": onnx}))
        (note,) = fs.load().runs[0].artifacts
        assert not note.stored and "over the store's cap of 100" in note.reason
        assert fs.stored_artifacts() == []

    def test_weights_are_never_stored(self, tmp_path: Path) -> None:
        """Eager PyTorch has no artifact; a .pt named as one is refused, with the reason."""
        weights = tmp_path / "best.pt"
        weights.write_bytes(b"a pickle")
        fs = FileStore(tmp_path / "h")
        doc = run_with({"t::a[pytorch]": None, "t::b[torchscript]": weights})
        save(fs, doc)
        (note,) = fs.load().runs[0].artifacts
        assert not note.stored and "pickles" in note.reason
        assert not (tmp_path / "h" / "artifacts").exists() or fs.stored_artifacts() == []

    def test_artifact_changed_since_it_was_timed_is_not_stored(self, tmp_path: Path, onnx: Path) -> None:
        doc = run_with({"t::a[onnxruntime]": onnx})
        onnx.write_bytes(b"another graph")
        fs = FileStore(tmp_path / "h")
        save(fs, doc)
        (note,) = fs.load().runs[0].artifacts
        assert not note.stored and "changed since it was timed" in note.reason

    def test_prune_removes_unreferenced_and_older_than_n_runs(self, tmp_path: Path, onnx: Path, ir) -> None:
        fs = FileStore(tmp_path / "h")
        save(fs, run_with({"t::b[openvino]": ir}))
        save(fs, run_with({"t::a[onnxruntime]": onnx}, seed=1))
        orphan = tmp_path / "orphan.onnx"
        orphan.write_bytes(b"orphan")
        fs._put(arts.Bundle(*artifact_content(orphan)))  # kept by no run
        assert len(fs.stored_artifacts()) == 3
        pruned = fs.prune_artifacts()
        assert pruned.removed == (artifact_content(orphan)[0].sha256,) and len(pruned.kept) == 2
        newest_only = fs.prune_artifacts(keep_runs=1)
        assert newest_only.removed == (sha256_path(ir),)
        assert fs.stored_artifacts() == [artifact_content(onnx)[0].sha256]
        left = sorted(p.name for p in (tmp_path / "h" / "artifacts").rglob("*") if p.is_file())
        sha = artifact_content(onnx)[0].sha256
        assert left == [sha, f"{sha}.json"]  # the IR's files went with it
        fs.get_artifact(sha, tmp_path / "out")

    def test_prune_command(self, tmp_path: Path, onnx: Path, capsys) -> None:
        """``detbench history prune --keep-runs 1`` (its parser alone: the full one imports torch)."""
        parser = _Parser(prog="detbench")
        history.add_parser(parser.add_subparsers())
        argv = ["history", "prune", "--history", str(tmp_path / "h"), "--keep-runs", "1"]
        fs = FileStore(tmp_path / "h")
        save(fs, run_with({"t::a[onnxruntime]": onnx}))
        assert history.run_prune(parser.parse_args(argv)) == 0
        assert "removed 0" in capsys.readouterr().out
        fs.save(benchmark_run({"t::a[onnxruntime]": 5.0}, seed=2))
        assert history.run_prune(parser.parse_args(argv)) == 0
        assert "removed 1" in capsys.readouterr().out and fs.stored_artifacts() == []


def test_recorder_keeps_the_runs_artifacts(tmp_path: Path, onnx: Path) -> None:
    """The session's recorder stores what the run timed in the local history."""
    recorder = RunRecorder(None, local=tmp_path / "h")
    recorder.record(run_with({"t::a[onnxruntime]": onnx}), enabled=True)
    assert [n.stored for n in recorder.notes] == [True]
    assert FileStore(tmp_path / "h").stored_artifacts() == [artifact_content(onnx)[0].sha256]


PLUGIN_RUN = '''
import numpy as np
import pytest

from detbench.runtimes.backends import BackendSettings


class Fake:
    """A backend as the timed fixture sees one: no runtime, an artifact on disk."""

    precision = "fp32"

    def __init__(self, name, fmt, artifact):
        self.name, self.artifact_format, self.artifact = name, fmt, artifact
        self.settings = BackendSettings(threads=2)

    def run(self, x):
        return x

    def describe(self):
        return {"backend": self.name}


@pytest.fixture(scope="session")
def baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "best.pt"
    path.write_bytes(b"weights")
    return path


def test_onnx(timed, tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"onnx bytes")
    timed(Fake("onnxruntime", "onnx", tmp_path / "m.onnx"), np.zeros((1, 3, 32, 32), np.float32))


def test_eager(timed, baseline):
    timed(Fake("pytorch", None, baseline), np.zeros((2, 3, 64, 64), np.float32))
'''


PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]


def test_a_plugin_run_records_what_each_benchmark_timed(tmp_path: Path) -> None:
    """Through pytest and the plugin: each benchmark's extra_info carries its identity, and the
    autosaved run's artifact (not the weights) is kept in the local history."""
    (tmp_path / "test_fake.py").write_text(PLUGIN_RUN)
    out = subprocess.run(
        [
            *PYTEST,
            "test_fake.py",
            "--benchmark-enable",
            "--benchmark-max-time=0.01",
            "--benchmark-json=run.json",
        ],
        cwd=tmp_path,
        env=pytest_child_env(DETBENCH_CACHE=str(tmp_path / "cache")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    benches = {
        b["name"]: b["extra_info"][IDENTITY_KEY]
        for b in json.loads((tmp_path / "run.json").read_text())["benchmarks"]
    }
    onnx, eager = (
        BenchIdentity.from_json(benches["test_onnx"]),
        BenchIdentity.from_json(benches["test_eager"]),
    )
    weights = hashlib.sha256(b"weights").hexdigest()
    assert onnx.artifact_sha256 == hashlib.sha256(b"onnx bytes").hexdigest()
    assert (onnx.artifact_format, onnx.threads, onnx.batch, onnx.imgsz) == ("onnx", 2, 1, 32)
    assert onnx.weights_sha256 == eager.weights_sha256 == weights
    assert (eager.artifact_sha256, eager.artifact_format, eager.batch, eager.imgsz) == (None, None, 2, 64)
    assert "onnxruntime" in onnx.versions and "torch" in onnx.versions
    history = FileStore(tmp_path / "cache" / "history")
    assert history.stored_artifacts() == [onnx.artifact_sha256]
