"""Tests for the bottom-layer file helpers: sha256 of files and folders, atomic writes."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from _support.processes import sigkill, spawn_python, wait_for
from detbench._fs import atomic_write_bytes, atomic_write_text, sha256_path

PAYLOAD = b"\x08\x07onnx-model-bytes" * 64


def _spawn(tmp_path: Path, code: str, *args: object) -> subprocess.Popen:
    return spawn_python(tmp_path / "child-fs", code, *args)


class TestSha256Path:
    def test_file_hash_is_sha256_of_bytes(self, tmp_path: Path) -> None:
        """A file hashes to the plain sha256 of its bytes."""
        f = tmp_path / "m.bin"
        f.write_bytes(PAYLOAD * 40_000)  # several read chunks
        assert sha256_path(f) == hashlib.sha256(PAYLOAD * 40_000).hexdigest()

    def test_directory_hash_follows_names_and_contents(self, tmp_path: Path) -> None:
        """Directory hashes ignore creation order but change with any file's name or bytes."""
        a, b = tmp_path / "a", tmp_path / "b"
        for d, order in ((a, ("model.xml", "model.bin")), (b, ("model.bin", "model.xml"))):
            d.mkdir()
            for name in order:
                (d / name).write_bytes(name.encode())
        assert sha256_path(a) == sha256_path(b)
        (b / "model.bin").write_bytes(b"other")
        assert sha256_path(a) != sha256_path(b)
        (b / "model.bin").write_bytes(b"model.bin")
        (b / "model.bin").rename(b / "renamed.bin")
        assert sha256_path(a) != sha256_path(b)


class TestAtomicWrite:
    def test_writes_and_replaces(self, tmp_path: Path) -> None:
        """atomic_write_* create parent dirs, replace old content and leave no temp file."""
        target = tmp_path / "reports" / "run.json"
        atomic_write_text(target, "first ✓\n")
        atomic_write_text(target, "second ✓\n")
        assert target.read_text(encoding="utf-8") == "second ✓\n"
        atomic_write_bytes(target, b"\x00\x01")
        assert target.read_bytes() == b"\x00\x01"
        assert os.listdir(target.parent) == ["run.json"]

    def test_failed_write_keeps_old_content(self, tmp_path: Path, monkeypatch) -> None:
        """If the final rename fails the target keeps its old bytes and the temp file is removed."""
        target = tmp_path / "history.json"
        target.write_text("old")

        def refuse(src, dst):
            raise OSError("disk on fire")

        monkeypatch.setattr(os, "replace", refuse)
        with pytest.raises(OSError, match="disk on fire"):
            atomic_write_text(target, "new")
        assert target.read_text() == "old"
        assert os.listdir(tmp_path) == ["history.json"]

    def test_killed_write_keeps_old_content(self, tmp_path: Path) -> None:
        """A writer SIGKILLed with its temp file half written leaves the target's old content intact."""
        target = tmp_path / "history.json"
        target.write_text("old content\n")
        marker = tmp_path / "first-chunk-written"
        # The child hangs after the first chunk of a large text reaches its temp file.
        code = """
            import os, sys, time
            from pathlib import Path
            from detbench._fs import atomic_write_text

            target, marker = Path(sys.argv[1]), Path(sys.argv[2])
            real_write = os.write

            def slow_write(fd, data):
                n = real_write(fd, data)
                marker.touch()
                time.sleep(120)
                return n

            os.write = slow_write
            atomic_write_text(target, "new line\\n" * 1_000_000)
        """
        proc = _spawn(tmp_path, code, target, marker)
        try:
            wait_for(marker, proc)
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".history.json.")]
            assert len(temps) == 1
            assert 0 < temps[0].stat().st_size < len("new line\n") * 1_000_000
            assert target.read_text() == "old content\n"
        finally:
            if proc.poll() is None:
                sigkill(proc)
        assert target.read_text() == "old content\n"
        atomic_write_text(target, "after\n")
        assert target.read_text() == "after\n"
