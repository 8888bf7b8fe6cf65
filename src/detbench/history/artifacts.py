"""The artifacts a run timed, kept by the history stores beside the run, content-addressed by sha256.

A run's benchmarks name what they ran (``BenchIdentity`` in extra_info, detbench.runtimes.identity)
and where it was (``extra_info["artifact"]``, a path on the runner that saved it). ``collect`` turns
those into ``Bundle``s (content plus local files); ``plan`` decides which a store keeps and notes
every one in the run under ``NOTES_KEY`` (kept, or why not: over the size cap, changed since it was
timed, weights). ``restore`` is the one read path of both stores: every file is checked against its
sha256 as it is written, and a mismatch raises ``StoredArtifactError`` and leaves nothing behind.

Weights (``.pt``) are pickles: no store keeps them, so nothing is ever unpickled that the user did not
name; a run records their sha256 only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detbench.errors import StoredArtifactError
from detbench.jsonsafe import json_safe
from detbench.runtimes.identity import (
    IDENTITY_KEY,
    WEIGHT_SUFFIXES,
    ArtifactContent,
    BenchIdentity,
    artifact_content,
)
from detbench.schema import doc, problems

NOTES_KEY = "detbench_artifacts"  # the run document's key for its notes
MAX_BYTES_ENV = "DETBENCH_ARTIFACT_MAX_BYTES"
DEFAULT_MAX_BYTES = 256 << 20  # 256 MiB: a YOLO export is tens of MB; a store is not a model registry


@dataclass(frozen=True)
class ArtifactNote:
    """What became of one artifact a run timed."""

    sha256: str = doc("the artifact's sha256 (BenchIdentity.artifact_sha256)")
    format: str | None = doc("its export format")
    size: int | None = doc("bytes; null when it could not be read")
    stored: bool = doc("the store keeps it (now or from an earlier run)")
    reason: str = doc('why it is not stored; "" when it is')

    def to_json(self) -> dict[str, Any]:
        return json_safe(self)

    @classmethod
    def from_json(cls, value: Any) -> ArtifactNote:
        found = problems(value, cls)
        if found:
            raise ValueError("; ".join(found[:3]))
        return cls(**value)


@dataclass(frozen=True)
class Bundle:
    """An artifact on this machine: its content and where each of its files is."""

    content: ArtifactContent
    files: Mapping[str, Path]
    format: str | None = None


def max_bytes_from_env() -> int:
    """``DETBENCH_ARTIFACT_MAX_BYTES`` (bytes; 0 stores none), else DEFAULT_MAX_BYTES."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{MAX_BYTES_ENV}={text!r}: expected a whole number of bytes") from None
    if value < 0:
        raise ValueError(f"{MAX_BYTES_ENV}={text!r}: must be >= 0")
    return value


def identities(run_doc: Mapping[str, Any]) -> list[tuple[BenchIdentity, dict[str, Any]]]:
    """(identity, extra_info) of each benchmark of a run document that carries one."""
    out = []
    for bench in run_doc.get("benchmarks") or []:
        extra = bench.get("extra_info") if isinstance(bench, Mapping) else None
        if isinstance(extra, Mapping) and IDENTITY_KEY in extra:
            out.append((BenchIdentity.from_json(extra[IDENTITY_KEY]), dict(extra)))
    return out


def collect(run_doc: Mapping[str, Any]) -> tuple[dict[str, Bundle], list[ArtifactNote]]:
    """The artifacts a run document's benchmarks ran, by sha256, read from the paths they name; and a
    note for each that cannot be kept (gone, changed since it was timed, weights)."""
    bundles: dict[str, Bundle] = {}
    notes: dict[str, ArtifactNote] = {}
    for ident, extra in identities(run_doc):
        sha = ident.artifact_sha256
        if sha is None or sha in bundles or sha in notes:
            continue
        path = extra.get("artifact")

        def refuse(reason: str, ident: BenchIdentity = ident) -> ArtifactNote:
            return ArtifactNote(
                ident.artifact_sha256 or "", ident.artifact_format, ident.artifact_bytes, False, reason
            )

        if not isinstance(path, str):
            notes[sha] = refuse("the run does not say where the artifact was")
            continue
        try:
            content, files = artifact_content(path)
        except OSError as exc:
            notes[sha] = refuse(f"cannot read {path} ({type(exc).__name__})")
            continue
        if content.sha256 != sha:
            notes[sha] = refuse(f"{path} changed since it was timed (sha256 {content.sha256[:12]}…)")
        elif any(Path(rel).suffix in WEIGHT_SUFFIXES for rel in files):
            notes[sha] = refuse("weights are pickles: a store never keeps them")
        else:
            bundles[sha] = Bundle(content, files, ident.artifact_format)
    return bundles, list(notes.values())


def plan(
    run_doc: Mapping[str, Any], bundles: Mapping[str, Bundle], refused: Sequence[ArtifactNote], max_bytes: int
) -> tuple[dict[str, Any], list[Bundle], list[ArtifactNote]]:
    """The run document with every artifact's note (``NOTES_KEY``), the bundles to keep, and the notes."""
    keep, notes = [], list(refused)
    for sha, bundle in bundles.items():
        size = bundle.content.size
        if size > max_bytes:
            reason = f"{size} bytes is over the store's cap of {max_bytes} ({MAX_BYTES_ENV})"
            notes.append(ArtifactNote(sha, bundle.format, size, False, reason))
        else:
            keep.append(bundle)
            notes.append(ArtifactNote(sha, bundle.format, size, True, ""))
    notes.sort(key=lambda n: n.sha256)
    return {**run_doc, NOTES_KEY: [n.to_json() for n in notes]}, keep, notes


def parse_notes(value: Any) -> tuple[ArtifactNote, ...]:
    """A run document's ``NOTES_KEY`` value (absent: none); ValueError when malformed."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{NOTES_KEY} is not a list")
    return tuple(ArtifactNote.from_json(v) for v in value)


def referenced(runs: Iterable[Any]) -> set[str]:
    """sha256 of every artifact the given RunRecords' benchmarks ran."""
    return {
        b.identity.artifact_sha256
        for run in runs
        for b in run.benchmarks
        if b.identity is not None and b.identity.artifact_sha256 is not None
    }


def parse_content(raw: Any, sha256: str, location: str) -> ArtifactContent:
    """A stored manifest, checked to add up to ``sha256``; StoredArtifactError otherwise."""
    try:
        content = ArtifactContent.from_json(raw)
    except (ValueError, TypeError) as exc:
        raise StoredArtifactError(location, sha256, f"its manifest is corrupt ({exc}); refused") from None
    if content.sha256 != sha256:
        raise StoredArtifactError(location, sha256, f"its manifest names {content.sha256}; refused")
    return content


def restore(content: ArtifactContent, write: Callable[[str, Path], str], dest: Path, location: str) -> Path:
    """Write the artifact's files into the new folder ``dest`` with ``write(file_sha256, target)`` (which
    returns the sha256 of what it wrote) and return the path a backend loads. Any file whose bytes do
    not match raises StoredArtifactError naming the artifact, and nothing is left at ``dest``."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: exists; restore into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir()
    try:
        for f in content.files:
            target = tmp / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                got = write(f.sha256, target)
            except FileNotFoundError:
                raise StoredArtifactError(location, content.sha256, f"file {f.path} is missing") from None
            if got != f.sha256:
                raise StoredArtifactError(
                    location,
                    content.sha256,
                    f"file {f.path} has sha256 {got[:12]}…, not the {f.sha256[:12]}… it was stored with"
                    " (changed outside detbench); refused",
                )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return dest if content.entry == "." else dest / content.entry


@dataclass(frozen=True)
class Pruned:
    """What ``prune_artifacts`` removed, and the runs whose references it counted."""

    removed: tuple[str, ...]
    kept: tuple[str, ...]
    runs_counted: int
    problems: tuple[str, ...] = ()  # runs that could not be read: their references were not counted
