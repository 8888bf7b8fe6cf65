"""The artifact store for exported models.

An entry is ``<root>/<kind>/<key>/{<filename>, entry.json}``. It is built in a private temp dir
and renamed into place whole, under a cross-process lock, and its sha256 is checked on every
reuse: a killed or tampered build is never handed out.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detbench import __version__
from detbench._fs import atomic_write_text, fsync_dir, locked, sha256_path
from detbench.errors import CacheError
from detbench.paths import cache_dir

log = logging.getLogger("detbench.runtimes.cache")

ENTRY_FILE = "entry.json"
ENTRY_FORMAT = 1
KEY_LEN = 24
# A temp/trash dir of another key is only swept when this old and its owner is gone; one of our
# own key is swept at once, since holding the key's lock proves no live build owns it.
STALE_AGE_S = 3600.0
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# ---------------------------------------------------------------------------------------------
# Entries


@dataclass(frozen=True)
class Artifact:
    """A verified cache entry."""

    path: Path  # the artifact itself (file, or directory for OpenVINO)
    sha256: str
    meta: dict  # the entry's recorded metadata (kind, fields, created, size_bytes, ...)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def _digest(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "digest"}).encode()).hexdigest()


def artifact_size(path: Path | str) -> int:
    """An artifact's size on disk: a file's bytes; an OpenVINO IR (its folder or its .xml) counts
    the .xml plus its .bin; any other folder, every file in it."""
    path = Path(path)
    xmls = sorted(path.glob("*.xml")) if path.is_dir() else []
    if len(xmls) == 1:  # the IR folder the openvino backend loads (ours, or ultralytics' with metadata.yaml)
        path = xmls[0]
    elif path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        return path.stat().st_size + path.with_suffix(".bin").stat().st_size
    return path.stat().st_size


def _check_name(value: str, what: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or value == ENTRY_FILE:
        raise ValueError(
            f"{what} {value!r}: must be a plain file name (letters, digits, '._-'), not {ENTRY_FILE}"
        )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


def _key_of(fields: Mapping[str, Any], kind: str) -> str:
    payload = _canonical({"kind": kind, "fields": dict(fields)})
    return hashlib.sha256(payload.encode()).hexdigest()[:KEY_LEN]


def _validate(entry_dir: Path) -> Artifact:
    """The entry in ``entry_dir``, fully checked; raises CacheError saying what is wrong."""
    meta_path = entry_dir / ENTRY_FILE
    try:
        entry = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheError(meta_path, "missing (interrupted or foreign entry)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheError(meta_path, f"unreadable: {e}") from None
    if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
        raise CacheError(meta_path, f"not a format-{ENTRY_FORMAT} entry")
    if entry.get("digest") != _digest(entry):
        raise CacheError(meta_path, "edited or corrupt (its digest does not match its content)")
    kind, fields, filename = entry.get("kind"), entry.get("fields"), entry.get("filename")
    if (
        not isinstance(kind, str)
        or not isinstance(fields, dict)
        or not isinstance(filename, str)
        or not _NAME_RE.fullmatch(filename)
        or entry_dir.parent.name != kind
        or _key_of(fields, kind) != entry_dir.name
    ):
        raise CacheError(meta_path, "does not describe this entry (kind, fields or filename disagree)")
    artifact = entry_dir / filename
    try:
        actual = sha256_path(artifact)
    except FileNotFoundError:
        raise CacheError(artifact, "artifact missing") from None
    except OSError as e:
        raise CacheError(artifact, f"artifact unreadable: {e}") from None
    if actual != entry.get("sha256"):
        raise CacheError(artifact, f"sha256 {actual[:12]}… does not match entry.json ({entry.get('sha256')})")
    return Artifact(path=artifact, sha256=actual, meta=entry)


def verify(artifact: Artifact) -> None:
    """Re-check an artifact against its bytes and its entry.json; raises CacheError if either changed."""
    current = _validate(artifact.path.parent)
    if current.path != artifact.path or current.sha256 != artifact.sha256:
        raise CacheError(artifact.path, "entry was replaced since this artifact was handed out")


class ArtifactCache:
    """Exported models keyed by what determines their bytes; built once, verified on every reuse.

    Counters: ``builds`` counts calls to a build function (export work done), ``rebuilds`` the
    subset that replaced a corrupt entry, ``hits`` the verified entries returned without building.
    """

    def __init__(self, root: Path | None = None, *, lock_timeout: float = 600) -> None:
        self.root = Path(root) if root is not None else cache_dir("artifacts")
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock_timeout = lock_timeout
        self.builds = 0
        self.hits = 0
        self.rebuilds = 0

    def key(self, kind: str, fields: Mapping[str, Any]) -> str:
        """First 24 hex of the sha256 of canonical JSON of kind and fields (order-free; non-JSON → str)."""
        _check_name(kind, "kind")
        return _key_of(fields, kind)

    def entry_dir(self, kind: str, fields: Mapping[str, Any]) -> Path:
        return self.root / kind / self.key(kind, fields)

    def _check(self, entry_dir: Path) -> tuple[Artifact | None, str | None]:
        """(artifact, None) if valid, (None, None) if absent, (None, reason) if corrupt."""
        if not entry_dir.exists():
            return None, None
        try:
            return _validate(entry_dir), None
        except CacheError as e:
            return None, str(e)

    def lookup(self, kind: str, fields: Mapping[str, Any]) -> Artifact | None:
        """The verified entry, or None; a corrupt entry is logged and removed."""
        d = self.entry_dir(kind, fields)
        artifact, reason = self._check(d)
        if artifact is not None or reason is None:
            return artifact
        # Removal under the lock, re-checked: a concurrent rebuild may just have replaced it.
        with locked(d, self.lock_timeout):
            artifact, reason = self._check(d)
            if reason is not None:
                log.warning("removing corrupt cache entry %s: %s", d, reason)
                self._discard(d)
        return artifact

    def verify(self, artifact: Artifact) -> None:
        verify(artifact)

    def get_or_build(
        self,
        kind: str,
        fields: Mapping[str, Any],
        filename: str,
        build: Callable[[Path], None],
    ) -> Artifact:
        """The verified entry for (kind, fields), building it with ``build(dest)`` if absent or corrupt.

        ``build`` must create ``dest`` (a file, or a directory for OpenVINO); it runs in a private
        temp dir, so an exception or a kill leaves nothing that is later reused.
        """
        _check_name(filename, "filename")
        d = self.entry_dir(kind, fields)
        artifact, _ = self._check(d)
        if artifact is not None:
            self.hits += 1
            return artifact
        with locked(d, self.lock_timeout):
            # Whoever held the lock before us may have built it while we waited.
            artifact, reason = self._check(d)
            if artifact is not None:
                self.hits += 1
                return artifact
            if reason is not None:
                log.warning("rebuilding corrupt cache entry %s: %s", d, reason)
            self._sweep(d.parent, d.name)
            # Counted before build runs: the counters record export work, finished or not.
            self.builds += 1
            if reason is not None:
                self.rebuilds += 1
            return self._build(d, kind, fields, filename, build, replace=d.exists())

    def _build(
        self,
        d: Path,
        kind: str,
        fields: Mapping[str, Any],
        filename: str,
        build: Callable[[Path], None],
        replace: bool,
    ) -> Artifact:
        tmp = d.parent / f".tmp-{d.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            dest = tmp / filename
            build(dest)
            if not dest.exists():
                raise CacheError(dest, f"build for {kind} did not create the artifact")
            entry = {
                "format": ENTRY_FORMAT,
                "kind": kind,
                "key": d.name,
                "fields": json.loads(_canonical(dict(fields))),
                "filename": filename,
                "sha256": sha256_path(dest),
                "size_bytes": artifact_size(dest),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "detbench_version": __version__,
            }
            entry["digest"] = _digest(entry)
            # entry.json last: a temp dir killed before this point has no valid entry at all.
            atomic_write_text(tmp / ENTRY_FILE, json.dumps(entry, indent=2, sort_keys=True) + "\n")
            if replace:
                # Aside, in, then delete: a reader sees the old entry, no entry, or the new one.
                trash = d.parent / f".trash-{d.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                os.rename(d, trash)
                os.rename(tmp, d)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(d.parent)
        return Artifact(path=d / filename, sha256=entry["sha256"], meta=entry)

    def _discard(self, d: Path) -> None:
        trash = d.parent / f".trash-{d.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(d, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def _sweep(self, kind_dir: Path, key: str) -> None:
        """Remove temp/trash dirs left by killed builds. Called with ``key``'s lock held."""
        if not kind_dir.is_dir():
            return
        now = time.time()
        for p in kind_dir.iterdir():
            parts = p.name.split("-")
            if len(parts) != 4 or parts[0] not in (".tmp", ".trash") or not p.is_dir():
                continue
            _, owner_key, pid, _ = parts
            if owner_key != key:
                try:
                    old = now - p.stat().st_mtime > STALE_AGE_S
                except FileNotFoundError:
                    continue
                if not old or (pid.isdigit() and _pid_alive(int(pid))):
                    continue
            shutil.rmtree(p, ignore_errors=True)
