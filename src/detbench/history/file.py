"""The file store: timed runs kept as pytest-benchmark JSON files in one directory (``<cache>/history``).

Every timed pytest-benchmark run (``--benchmark-json`` / ``--benchmark-autosave``) is also copied to
``<cache>/history/<UTC timestamp>_<machine id>.json``, written atomically under a lock, so the gate
can compare any two past runs of one machine (machine identity is in ``detbench.perf.machine``).
It vanishes with an ephemeral CI runner; detbench.history.postgres is the shared store.

The artifacts a run timed are kept beside the runs, content-addressed: each file once, at
``artifacts/<sha256[:2]>/<sha256>``, and each artifact's manifest (its files and their sha256) at
``artifacts/<sha256[:2]>/<sha256>.json``; a single-file artifact's sha256 is its file's.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detbench._fs import atomic_write_text, copy_hashing, locked
from detbench.errors import HistoryError, StoredArtifactError
from detbench.history import artifacts as arts
from detbench.history import benchjson
from detbench.history.store import History, run_record
from detbench.paths import cache_dir
from detbench.perf.machine import machine_id

# -------------------------------------------------------------------------------------------------
# History of timed runs


def history_dir() -> Path:
    return cache_dir("history")


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def save_run(
    output_json: Mapping[str, Any],
    *,
    directory: Path | None = None,
    machine: str | None = None,
    now: datetime | None = None,
    replace: Path | None = None,
) -> Path:
    """Write one run to ``<directory>/<UTC timestamp>_<machine id>.json`` and return the path.

    Two runs in the same second get ``-2``, ``-3``... suffixes instead of overwriting each other;
    ``replace`` names a file this session wrote earlier that should be overwritten instead.
    """
    directory = Path(directory) if directory is not None else history_dir()
    text = json.dumps(output_json, indent=2, sort_keys=True, default=str) + "\n"
    # One lock for the directory: choosing a free name and writing it must be one step.
    with locked(directory):
        if replace is not None:
            path = replace
        else:
            base = f"{_stamp(now or datetime.now(UTC))}_{machine or machine_id()}"
            path = directory / f"{base}.json"
            n = 1
            while path.exists():
                n += 1
                path = directory / f"{base}-{n}.json"
        atomic_write_text(path, text)
    return path


# -------------------------------------------------------------------------------------------------
# The store


class FileStore:
    """The default store: pytest-benchmark JSON files in one directory (``<cache>/history``)."""

    def __init__(self, directory: Path | str | None = None, *, max_artifact_bytes: int | None = None) -> None:
        self.directory = Path(directory) if directory is not None else history_dir()
        self.location = str(self.directory)
        self.artifacts_dir = self.directory / "artifacts"
        self.max_artifact_bytes = (
            arts.max_bytes_from_env() if max_artifact_bytes is None else max_artifact_bytes
        )
        self._saved: dict[str, Path] = {}  # run_uuid -> the file this store object wrote for it

    def save(
        self,
        doc: Mapping[str, Any],
        *,
        tag: str | None = None,
        run_uuid: str | None = None,
        artifacts: Mapping[str, arts.Bundle] | None = None,
        refused: Sequence[arts.ArtifactNote] = (),
    ) -> str:
        """Write the run to a new file, its artifacts first; a run_uuid saved before through this
        object rewrites its file."""
        extra: dict[str, Any] = {benchjson.TAG_KEY: tag} if tag else {}
        if run_uuid:
            extra[benchjson.RUN_UUID_KEY] = run_uuid
        if artifacts or refused:
            doc, keep, _ = arts.plan(doc, artifacts or {}, refused, self.max_artifact_bytes)
        else:
            keep = []
        # Under the artifacts' lock: a prune between writing them and the run would find them unreferenced.
        with locked(self.artifacts_dir):
            for bundle in keep:
                self._put(bundle)
            path = save_run(
                {**doc, **extra}, directory=self.directory, replace=self._saved.get(run_uuid or "")
            )
        if run_uuid:
            self._saved[run_uuid] = path
        return path.stem

    # -- artifacts --

    def _blob(self, sha256: str) -> Path:
        return self.artifacts_dir / sha256[:2] / sha256

    def _manifest(self, sha256: str) -> Path:
        return self.artifacts_dir / sha256[:2] / f"{sha256}.json"

    def _put(self, bundle: arts.Bundle) -> None:
        """Copy each file not yet kept, checking its bytes against the content; then the manifest."""
        content = bundle.content
        for f in content.files:
            blob = self._blob(f.sha256)
            if blob.is_file():
                continue  # the same bytes, kept for an earlier run (a tampered copy is refused on reading)
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.parent / f".{f.sha256}.{uuid.uuid4().hex[:12]}.tmp"
            got = copy_hashing(bundle.files[f.path], tmp)
            if got != f.sha256:
                tmp.unlink()
                raise StoredArtifactError(
                    self.location, content.sha256, f"{bundle.files[f.path]} changed while it was being kept"
                )
            os.replace(tmp, blob)
        manifest = self._manifest(content.sha256)
        if not manifest.is_file():
            atomic_write_text(manifest, json.dumps(content.to_json(), indent=1) + "\n")

    def get_artifact(self, sha256: str, dest: Path) -> Path:
        manifest = self._manifest(sha256)
        try:
            raw = json.loads(manifest.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoredArtifactError(self.location, sha256, "not stored") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoredArtifactError(self.location, sha256, f"its manifest is unreadable ({exc})") from None
        content = arts.parse_content(raw, sha256, self.location)
        return arts.restore(
            content, lambda sha, target: copy_hashing(self._blob(sha), target), dest, self.location
        )

    def stored_artifacts(self) -> list[str]:
        """sha256 of every artifact with a manifest here."""
        return sorted(p.stem for p in self.artifacts_dir.glob("??/*.json"))

    def prune_artifacts(self, keep_runs: int | None = None) -> arts.Pruned:
        with locked(self.artifacts_dir):
            found = self.load(limit=keep_runs) if keep_runs != 0 and self.directory.is_dir() else None
            runs = found.runs if found else []
            wanted = arts.referenced(runs)
            removed, kept = [], []
            for sha in self.stored_artifacts():
                if sha in wanted:
                    kept.append(sha)
                else:
                    self._manifest(sha).unlink()
                    removed.append(sha)
            # A file is kept while a kept manifest lists it; an unreadable manifest keeps none of its own.
            needed = set()
            for sha in kept:
                try:
                    content = arts.parse_content(
                        json.loads(self._manifest(sha).read_text(encoding="utf-8")), sha, self.location
                    )
                except (OSError, ValueError, StoredArtifactError):
                    continue
                needed |= {f.sha256 for f in content.files}
            for blob in self.artifacts_dir.glob("??/*"):
                if blob.suffix != ".json" and not blob.name.startswith(".") and blob.name not in needed:
                    blob.unlink()
        return arts.Pruned(tuple(removed), tuple(kept), len(runs), tuple(found.problems if found else ()))

    def path(self, run_id: str) -> Path:
        """The file holding run ``run_id``."""
        return self.directory / f"{run_id}.json"

    def load(self, machine_id: str | None = None, limit: int | None = None) -> History:
        out = History()
        if not self.directory.is_dir():
            out.problems.append(f"{self.directory}: no such directory")
            return out
        for path in sorted(self.directory.glob("*.json")):
            try:
                record = run_record(benchjson.load(path), run_id=path.stem)
            except HistoryError as exc:  # names the file (a malformed identity or note too)
                out.problems.append(str(exc))
                continue
            if machine_id is None or record.machine_id == machine_id:
                out.runs.append(record)
        out.runs.sort(key=lambda r: (r.created, r.run_id), reverse=True)
        del out.runs[limit or len(out.runs) :]
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> FileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
