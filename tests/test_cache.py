"""Tests for the artifact cache: keys, reuse, tamper detection, kill-safety and cross-process locking."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from _support.processes import sigkill, spawn_python, wait_for
from detbench._fs import locked, sha256_path
from detbench.errors import CacheError
from detbench.runtimes.cache import ENTRY_FILE, ArtifactCache, verify

KIND = "onnx"
FIELDS = {"model": "yolov8n", "imgsz": 128, "opset": 17, "simplify": True}
OTHER = {**FIELDS, "imgsz": 320}
PAYLOAD = b"\x08\x07onnx-model-bytes" * 64


def _writer(payload: bytes = PAYLOAD, calls: list[Path] | None = None):
    def build(dest: Path) -> None:
        if calls is not None:
            calls.append(dest)
        dest.write_bytes(payload)

    return build


def _must_not_build(dest: Path) -> None:
    raise AssertionError(f"build called for {dest}; the entry should have been reused")


def _stray_dirs(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name.startswith((".tmp-", ".trash-"))]


@pytest.fixture
def cache(tmp_path: Path) -> ArtifactCache:
    return ArtifactCache(tmp_path / "artifacts")


# ---------------------------------------------------------------------------------------------
# Subprocess helpers: children run the venv's python and import detbench like any user would.


def _spawn(tmp_path: Path, code: str, *args: object) -> subprocess.Popen:
    return spawn_python(tmp_path / "child-cache", code, *args)


# Writes half the artifact, signals the parent, then hangs until SIGKILLed.
_HALF_BUILD_CHILD = """
    import json, sys, time
    from pathlib import Path
    from detbench.runtimes.cache import ArtifactCache

    root, marker, fields = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])

    def build(dest):
        with open(dest, "wb") as f:
            f.write(b"half" * 1000)
            f.flush()
            marker.touch()
            time.sleep(120)
            f.write(b"rest")

    ArtifactCache(root).get_or_build("onnx", fields, "model.onnx", build)
"""


def _kill_mid_build(tmp_path: Path, root: Path, fields: dict) -> None:
    marker = tmp_path / "half-written"
    proc = _spawn(tmp_path, _HALF_BUILD_CHILD, root, marker, json.dumps(fields))
    try:
        wait_for(marker, proc)
    finally:
        if proc.poll() is None:
            sigkill(proc)
    halves = [p for p in root.rglob("model.onnx") if p.read_bytes() == b"half" * 1000]
    assert halves, "the child was not killed in the middle of its write"


# ---------------------------------------------------------------------------------------------


class TestKey:
    def test_key_is_stable(self, cache: ArtifactCache, tmp_path: Path) -> None:
        """The same kind and fields give the same 24-hex key, in a new cache and a new process."""
        key = cache.key(KIND, FIELDS)
        assert len(key) == 24
        assert int(key, 16) >= 0
        assert ArtifactCache(tmp_path / "elsewhere").key(KIND, dict(FIELDS)) == key
        code = """
            import json, sys
            from pathlib import Path
            from detbench.runtimes.cache import ArtifactCache
            print(ArtifactCache(Path(sys.argv[1])).key("onnx", json.loads(sys.argv[2])))
        """
        proc = _spawn(tmp_path, code, tmp_path / "child", json.dumps(FIELDS))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == key

    def test_key_ignores_dict_order(self, cache: ArtifactCache) -> None:
        """Field order does not matter, at any depth."""
        a = {"a": 1, "b": {"x": 1, "y": 2}}
        b = {"b": {"y": 2, "x": 1}, "a": 1}
        assert cache.key(KIND, a) == cache.key(KIND, b)

    CHANGES = ({"model": "yolov8s"}, {"imgsz": 129}, {"opset": "17"}, {"simplify": False}, {"extra": None})

    @pytest.mark.parametrize("change", CHANGES)
    def test_key_changes_with_any_field(self, cache: ArtifactCache, change: dict) -> None:
        """Changing, retyping or adding one field gives a new key."""
        assert cache.key(KIND, {**FIELDS, **change}) != cache.key(KIND, FIELDS)

    def test_key_depends_on_kind(self, cache: ArtifactCache) -> None:
        """The same fields under another kind are another artifact."""
        assert cache.key("torchscript", FIELDS) != cache.key(KIND, FIELDS)
        assert cache.entry_dir(KIND, FIELDS) == cache.root / KIND / cache.key(KIND, FIELDS)

    def test_key_rejects_path_like_names(self, cache: ArtifactCache) -> None:
        """A kind or filename that could escape the cache root is refused, naming the argument."""
        with pytest.raises(ValueError, match="kind"):
            cache.key("../evil", FIELDS)
        with pytest.raises(ValueError, match="filename"):
            cache.get_or_build(KIND, FIELDS, "sub/model.onnx", _must_not_build)
        with pytest.raises(ValueError, match="filename"):
            cache.get_or_build(KIND, FIELDS, ENTRY_FILE, _must_not_build)


class TestGetOrBuild:
    def test_builds_once_then_hits(self, cache: ArtifactCache) -> None:
        """The first call builds; later calls, in this cache or a new one, reuse without building."""
        calls: list[Path] = []
        first = cache.get_or_build(KIND, FIELDS, "model.onnx", _writer(calls=calls))
        assert (cache.builds, cache.hits, cache.rebuilds) == (1, 0, 0)
        assert len(calls) == 1
        assert calls[0].parent != first.path.parent  # built in a private temp dir
        again = cache.get_or_build(KIND, FIELDS, "model.onnx", _must_not_build)
        assert (cache.builds, cache.hits) == (1, 1)
        assert again == first
        fresh = ArtifactCache(cache.root)
        assert fresh.get_or_build(KIND, FIELDS, "model.onnx", _must_not_build).sha256 == first.sha256
        assert (fresh.builds, fresh.hits) == (0, 1)

    def test_artifact_matches_its_file(self, cache: ArtifactCache) -> None:
        """The artifact's path, sha256 and entry.json describe the bytes the build wrote."""
        art = cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        assert art.path == cache.entry_dir(KIND, FIELDS) / "model.onnx"
        assert art.path.read_bytes() == PAYLOAD
        assert art.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
        entry = json.loads((art.path.parent / ENTRY_FILE).read_text())
        assert entry == art.meta
        assert entry["kind"] == KIND
        assert entry["fields"] == FIELDS
        assert entry["filename"] == "model.onnx"
        assert entry["sha256"] == art.sha256
        assert entry["size_bytes"] == len(PAYLOAD)
        assert entry["created"]
        assert entry["detbench_version"]
        assert cache.lookup(KIND, FIELDS) == art
        assert cache.lookup(KIND, OTHER) is None

    def test_directory_artifact(self, cache: ArtifactCache) -> None:
        """An OpenVINO-style directory (.xml + .bin) is stored, hashed and reused as one artifact."""

        def build(dest: Path) -> None:
            dest.mkdir()
            (dest / "model.xml").write_text("<net/>")
            (dest / "model.bin").write_bytes(PAYLOAD)

        art = cache.get_or_build("openvino", FIELDS, "model_openvino", build)
        assert art.path.is_dir()
        assert sorted(p.name for p in art.path.iterdir()) == ["model.bin", "model.xml"]
        assert art.sha256 == sha256_path(art.path)
        assert art.meta["size_bytes"] == len(PAYLOAD) + len("<net/>")
        assert cache.get_or_build("openvino", FIELDS, "model_openvino", _must_not_build) == art
        (art.path / "model.bin").write_bytes(PAYLOAD[:-1])
        assert cache.lookup("openvino", FIELDS) is None

    def test_default_root_follows_detbench_cache(self, tmp_path: Path, monkeypatch) -> None:
        """Without a root, artifacts live under $DETBENCH_CACHE/artifacts."""
        monkeypatch.setenv("DETBENCH_CACHE", str(tmp_path / "dc"))
        assert ArtifactCache().root == (tmp_path / "dc" / "artifacts").resolve()

    def test_failing_build_leaves_nothing(self, cache: ArtifactCache) -> None:
        """A build that raises propagates its own exception and leaves no entry and no temp dir."""
        boom = RuntimeError("export exploded")

        def build(dest: Path) -> None:
            dest.write_bytes(b"partial")
            raise boom

        with pytest.raises(RuntimeError) as info:
            cache.get_or_build(KIND, FIELDS, "model.onnx", build)
        assert info.value is boom
        assert not cache.entry_dir(KIND, FIELDS).exists()
        assert _stray_dirs(cache.root) == []
        assert cache.get_or_build(KIND, FIELDS, "model.onnx", _writer()).path.read_bytes() == PAYLOAD

    def test_build_without_output_is_an_error(self, cache: ArtifactCache) -> None:
        """A build that creates nothing is reported with the missing path, and nothing is stored."""
        with pytest.raises(CacheError, match=r"model\.onnx.*did not create"):
            cache.get_or_build(KIND, FIELDS, "model.onnx", lambda dest: None)
        assert not cache.entry_dir(KIND, FIELDS).exists()
        assert _stray_dirs(cache.root) == []

    def test_lock_timeout_names_the_lock(self, cache: ArtifactCache) -> None:
        """A builder that cannot get the key's lock in time fails with a CacheError naming the lock."""
        impatient = ArtifactCache(cache.root, lock_timeout=0.1)
        with locked(cache.entry_dir(KIND, FIELDS)), pytest.raises(CacheError, match=r"\.lock.*not acquired"):
            impatient.get_or_build(KIND, FIELDS, "model.onnx", _must_not_build)

    def test_sweeps_only_dead_or_own_temp_dirs(self, cache: ArtifactCache) -> None:
        """Old temp dirs of dead builds go; a live owner's or a recent one's stay."""
        kind_dir = cache.root / KIND
        kind_dir.mkdir(parents=True)
        other = cache.key(KIND, OTHER)
        dead_old = kind_dir / f".tmp-{other}-999999999-aaaa"
        live_old = kind_dir / f".tmp-{other}-{os.getpid()}-bbbb"
        dead_new = kind_dir / f".trash-{other}-999999999-cccc"
        own = kind_dir / f".tmp-{cache.key(KIND, FIELDS)}-{os.getpid()}-dddd"
        two_hours_ago = time.time() - 7200
        for d in (dead_old, live_old, dead_new, own):
            d.mkdir()
            (d / "model.onnx").write_bytes(b"half")
        for d in (dead_old, live_old):
            os.utime(d, (two_hours_ago, two_hours_ago))
        cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        assert sorted(p.name for p in _stray_dirs(cache.root)) == sorted([live_old.name, dead_new.name])


def _flip_byte(art) -> None:
    data = bytearray(art.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.path.write_bytes(bytes(data))


def _edit_entry(art, old: str, new: str) -> None:
    meta_path = art.path.parent / ENTRY_FILE
    meta_path.write_text(meta_path.read_text().replace(old, new))


TAMPERS = {
    "flipped-byte": _flip_byte,
    "truncated": lambda art: art.path.write_bytes(art.path.read_bytes()[:10]),
    "artifact-deleted": lambda art: art.path.unlink(),
    "entry-edited": lambda art: _edit_entry(art, art.meta["created"], "1999-01-01T00:00:00+00:00"),
    "entry-sha-forged": lambda art: _edit_entry(art, art.sha256, "0" * 64),
    "entry-garbage": lambda art: (art.path.parent / ENTRY_FILE).write_bytes(b"\xff{not json"),
    "entry-deleted": lambda art: (art.path.parent / ENTRY_FILE).unlink(),
}


class TestTampering:
    @pytest.mark.parametrize("tamper", TAMPERS.values(), ids=TAMPERS.keys())
    def test_tampered_entry_is_rebuilt(self, cache: ArtifactCache, caplog, tamper) -> None:
        """Any damage to the artifact or its entry.json is logged, and the entry is rebuilt valid."""
        art = cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        tamper(art)
        with caplog.at_level(logging.WARNING, logger="detbench.runtimes.cache"):
            rebuilt = cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        assert (cache.builds, cache.rebuilds, cache.hits) == (2, 1, 0)
        assert str(cache.entry_dir(KIND, FIELDS)) in caplog.text
        assert rebuilt.path.read_bytes() == PAYLOAD
        assert rebuilt.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
        verify(rebuilt)
        assert _stray_dirs(cache.root) == []
        assert cache.get_or_build(KIND, FIELDS, "model.onnx", _must_not_build) == rebuilt

    def test_lookup_removes_corrupt_entry(self, cache: ArtifactCache, caplog) -> None:
        """lookup returns None for a corrupt entry, removes it and says which one."""
        art = cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        _flip_byte(art)
        with caplog.at_level(logging.WARNING, logger="detbench.runtimes.cache"):
            assert cache.lookup(KIND, FIELDS) is None
        assert str(art.path.parent) in caplog.text
        assert not art.path.parent.exists()
        assert _stray_dirs(cache.root) == []

    def test_lookup_leaves_removal_to_the_lock_holder(self, cache: ArtifactCache) -> None:
        """lookup leaves a corrupt entry alone while another process holds its lock (maybe replacing it)."""
        art = cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        _flip_byte(art)
        impatient = ArtifactCache(cache.root, lock_timeout=0.1)
        with locked(art.path.parent), pytest.raises(CacheError, match="not acquired"):
            impatient.lookup(KIND, FIELDS)
        assert art.path.exists()

    def test_entry_without_metadata_is_not_reused(self, cache: ArtifactCache) -> None:
        """A final dir holding only the artifact (no entry.json) is never handed out."""
        d = cache.entry_dir(KIND, FIELDS)
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(PAYLOAD)
        assert cache.lookup(KIND, FIELDS) is None
        cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        assert cache.rebuilds == 0  # lookup already removed it
        assert cache.builds == 1

    def test_verify_raises_on_tampering(self, cache: ArtifactCache) -> None:
        """verify passes on a good artifact and raises CacheError naming the file once it changes."""
        art = cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        verify(art)
        cache.verify(art)
        _flip_byte(art)
        with pytest.raises(CacheError, match="sha256") as info:
            verify(art)
        assert info.value.path == art.path


class TestKilledBuild:
    def test_killed_build_leaves_no_entry(self, tmp_path: Path, cache: ArtifactCache) -> None:
        """A build SIGKILLed mid-write leaves no entry; the next call builds a correct one."""
        _kill_mid_build(tmp_path, cache.root, FIELDS)
        assert cache.lookup(KIND, FIELDS) is None
        assert not cache.entry_dir(KIND, FIELDS).exists()
        art = cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        assert (cache.builds, cache.hits) == (1, 0)
        assert art.path.read_bytes() == PAYLOAD
        verify(art)
        assert _stray_dirs(cache.root) == []  # the dead build's temp dir was swept

    def test_killed_build_spares_other_entries(self, tmp_path: Path, cache: ArtifactCache) -> None:
        """Killing a build of one key leaves another key's entry valid and reusable."""
        kept = cache.get_or_build(KIND, OTHER, "model.onnx", _writer(b"other model"))
        _kill_mid_build(tmp_path, cache.root, FIELDS)
        fresh = ArtifactCache(cache.root)
        assert fresh.get_or_build(KIND, OTHER, "model.onnx", _must_not_build) == kept
        assert kept.path.read_bytes() == b"other model"

    def test_killed_rebuild_does_not_half_replace(self, tmp_path: Path, cache: ArtifactCache) -> None:
        """A rebuild killed mid-write leaves the old entry whole, not half-replaced; the next call repairs."""
        old = cache.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        _flip_byte(old)
        damaged = old.path.read_bytes()
        old_entry = (old.path.parent / ENTRY_FILE).read_text()
        _kill_mid_build(tmp_path, cache.root, FIELDS)
        assert old.path.read_bytes() == damaged
        assert (old.path.parent / ENTRY_FILE).read_text() == old_entry
        fresh = ArtifactCache(cache.root)
        art = fresh.get_or_build(KIND, FIELDS, "model.onnx", _writer())
        assert (fresh.builds, fresh.rebuilds) == (1, 1)
        assert art.path.read_bytes() == PAYLOAD
        verify(art)


_RACE_CHILD = """
    import json, sys, time
    from pathlib import Path
    from detbench.runtimes.cache import ArtifactCache

    root, counter, ready, go = map(Path, sys.argv[1:5])

    def build(dest):
        with open(counter, "a") as f:
            f.write("built\\n")
        time.sleep(1.0)
        dest.write_bytes(b"shared model")

    cache = ArtifactCache(root)
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
    art = cache.get_or_build("onnx", {"model": "yolov8n"}, "model.onnx", build)
    print(json.dumps({"sha256": art.sha256, "builds": cache.builds, "hits": cache.hits}))
"""


def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    """Two processes asking for the same artifact at once build it once and get the same bytes."""
    root, counter, go = tmp_path / "artifacts", tmp_path / "builds.txt", tmp_path / "go"
    readies = [tmp_path / f"ready-{i}" for i in range(2)]
    procs = [_spawn(tmp_path, _RACE_CHILD, root, counter, ready, go) for ready in readies]
    try:
        for proc, ready in zip(procs, readies):
            wait_for(ready, proc)
        go.touch()  # released together, so without the lock both would build
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                sigkill(proc)
    assert counter.read_text().splitlines() == ["built"]
    assert {r["sha256"] for r in results} == {hashlib.sha256(b"shared model").hexdigest()}
    assert sorted((r["builds"], r["hits"]) for r in results) == [(0, 1), (1, 0)]
