"""Where timed runs are kept: one ``Store`` interface, the store chosen from a URL by ``open_store``.

- ``detbench.history.file.FileStore``: the default, ``<cache>/history`` (one pytest-benchmark JSON per
  run). It vanishes with an ephemeral CI runner.
- ``detbench.history.postgres.PostgresStore``: ``DETBENCH_HISTORY=postgresql://…`` (or
  ``--detbench-history URL``), a database a fleet of runners shares.

A session's timed run reaches both through this interface (detbench.history.recorder), with the
artifacts its benchmarks timed: each store keeps them content-addressed and checks their sha256 on
every read (``get_artifact``); ``prune_artifacts`` drops those no run references.

Runs are compared by *machine class* (detbench.perf.machine.machine_id: CPU model, cores, arch, ISA
flags) and *configuration* (``CONFIG_KEYS`` from each benchmark's extra_info).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from detbench.errors import HistoryStoreError
from detbench.history.artifacts import ArtifactNote, Bundle, Pruned
from detbench.history.benchjson import SavedRun
from detbench.perf import machine
from detbench.runtimes.identity import BenchIdentity

HISTORY_ENV = "DETBENCH_HISTORY"
TAG_ENV = "DETBENCH_HISTORY_TAG"
CONFIG_KEYS = ("backend", "precision", "threads", "batch", "imgsz")
"""extra_info keys that make two benchmarks of one name comparable (artifact paths differ per runner)."""


# -- the records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkRecord:
    fullname: str
    group: str | None
    config: dict[str, Any]
    samples: tuple[float, ...]  # seconds per round
    identity: BenchIdentity | None = None  # what it timed; None for runs saved before it was recorded

    def checksum(self) -> str:
        """sha256 over what a gate reads: name, configuration, samples (exact float repr) and identity."""
        fields: list[Any] = [self.fullname, self.config, list(self.samples)]
        if self.identity is not None:  # left out when absent: rows written before it keep their checksum
            fields.append(self.identity.to_json())
        body = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    run_id: str  # the store's key: a file stem or a database id
    created: datetime
    machine_id: str
    machine: dict[str, Any]  # cpu_model, cpu_flags, logical_cpus, arch
    versions: dict[str, Any]
    commit: str | None
    tag: str | None
    benchmarks: tuple[BenchmarkRecord, ...]
    run_uuid: str = ""
    artifacts: tuple[ArtifactNote, ...] = ()  # what became of each artifact it timed

    def benchmark(self, fullname: str) -> BenchmarkRecord | None:
        return next((b for b in self.benchmarks if b.fullname == fullname), None)


@dataclass
class History:
    """What a store holds, newest run first, plus one line per run or row that could not be read."""

    runs: list[RunRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _parse_time(value: object) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def run_record(saved: SavedRun, *, run_id: str = "", tag: str | None = None, run_uuid: str = "") -> RunRecord:
    """A saved pytest-benchmark run (detbench.history.benchjson, raw rounds required) as a RunRecord.

    A run that does not name its machine or time is taken to be this machine's, saved now.
    """
    info = saved.machine_info
    benches = []
    for b in saved.benchmarks:
        if b.samples is None:
            raise ValueError(f"benchmark {b.fullname!r}: parsed without its raw timings")
        config = {k: b.extra_info[k] for k in CONFIG_KEYS if k in b.extra_info}
        benches.append(BenchmarkRecord(b.fullname, b.group, config, b.samples, b.identity))
    return RunRecord(
        run_id=run_id,
        created=_parse_time(saved.datetime),
        machine_id=str(info.get("detbench_machine_id") or machine.machine_id()),
        machine={
            "cpu_model": info.get("cpu_model") or machine.cpu_model(),
            "cpu_flags": list(info.get("cpu_flags") or []),
            "logical_cpus": info.get("logical_cpus"),
            "arch": info.get("machine") or platform.machine(),
        },
        versions=dict(info.get("versions") or {}),
        commit=saved.commit,
        tag=tag if tag is not None else saved.tag,
        benchmarks=tuple(benches),
        run_uuid=run_uuid or str(saved.run_uuid or ""),
        artifacts=saved.artifacts,
    )


# -- the interface -------------------------------------------------------------------------------


class Store(Protocol):
    location: str  # printable: passwords redacted
    max_artifact_bytes: int  # an artifact larger than this is not kept; the run's note says so

    def save(
        self,
        doc: Mapping[str, Any],
        *,
        tag: str | None = None,
        run_uuid: str | None = None,
        artifacts: Mapping[str, Bundle] | None = None,
        refused: Sequence[ArtifactNote] = (),
    ) -> str:
        """Keep one pytest-benchmark run and the ``artifacts`` it timed (detbench.history.artifacts.collect);
        return its run id.

        Every artifact gets a note in the run (``NOTES_KEY``): kept, over ``max_artifact_bytes``, or one
        of the ``refused`` collect found. The artifacts are written with the run (PostgreSQL: in its
        transaction), each once per sha256. ``run_uuid`` names the run: saving it again keeps one run
        (the file store rewrites the file it wrote, PostgreSQL keeps the first). PostgreSQL refuses a
        run without raw samples.
        """
        ...

    def get_artifact(self, sha256: str, dest: Path) -> Path:
        """Write the stored artifact into the new folder ``dest``, every file checked against its sha256
        on the way, and return the path a backend loads. StoredArtifactError (naming the artifact) when
        it is not stored, or its bytes or manifest changed: a tampered artifact is never handed out."""
        ...

    def prune_artifacts(self, keep_runs: int | None = None) -> Pruned:
        """Remove every stored artifact that no run references; with ``keep_runs``, only the newest
        ``keep_runs`` runs' references count. Runs themselves are kept."""
        ...

    def load(self, machine_id: str | None = None, limit: int | None = None) -> History:
        """Runs newest first (of one machine class when given) and the problems found reading them."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...


def find_run(runs: Sequence[RunRecord], ref: str) -> RunRecord:
    """The run with id ``ref``, else the newest run tagged ``ref`` (``runs`` newest first)."""
    for r in runs:
        if r.run_id == ref:
            return r
    for r in runs:
        if r.tag == ref:
            return r
    raise LookupError(f"no run with id or tag {ref!r}")


# -- URLs ----------------------------------------------------------------------------------------


def redact(url: str) -> str:
    """``url`` with its password (in the netloc or a ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{hostport}"
    query = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="/*"), parts.fragment))


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


# -- choosing a store ----------------------------------------------------------------------------


def open_store(target: str | Path | None = None) -> Store:
    """A PostgresStore for a postgresql:// URL, else a FileStore on the directory (default: the cache's)."""
    from detbench.history.file import FileStore  # imported here: each store module imports this one

    if target is None:
        return FileStore()
    text = str(target)
    if "://" in text:
        if is_postgres_url(text):
            from detbench.history.postgres import PostgresStore

            return PostgresStore(text)
        raise HistoryStoreError(redact(text), "unknown store; pass a postgresql:// URL or a directory")
    return FileStore(Path(text).expanduser())


def history_target(option: str | None) -> str | None:
    """The shared store asked for: ``--detbench-history`` wins over DETBENCH_HISTORY; None = files only."""
    value = (option or os.environ.get(HISTORY_ENV, "")).strip()
    return value or None
