"""Where timed runs are kept: one interface, two stores.

- ``FileStore``: the default, ``<cache>/history`` (one pytest-benchmark JSON per run, see
  detbench.perf.history). It vanishes with an ephemeral CI runner.
- ``PostgresStore``: ``DETBENCH_HISTORY=postgresql://…`` (or ``--detbench-history URL``), a database a
  fleet of runners shares. Each run is one transaction (machine, run, every benchmark's raw samples),
  so a writer killed mid-run leaves nothing behind; a client-chosen ``run_uuid`` makes a retry after a
  lost connection idempotent. Every benchmark row carries a sha256 over its content, and a run its
  benchmark count: rows edited or deleted outside detbench are reported by ``load``, never skipped
  silently. The schema is versioned (``detbench_schema_version``) and created or migrated on first
  use, under an advisory lock so concurrent first writers do not race.

Runs are compared by *machine class* (detbench.perf.machine.machine_id: CPU model, cores, arch, ISA
flags) and *configuration* (``CONFIG_KEYS`` from each benchmark's extra_info).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from detbench.errors import HistoryStoreError
from detbench.perf import history, machine

HISTORY_ENV = "DETBENCH_HISTORY"
TAG_ENV = "DETBENCH_HISTORY_TAG"
CONFIG_KEYS = ("backend", "precision", "threads", "batch", "imgsz")
"""extra_info keys that make two benchmarks of one name comparable (artifact paths differ per runner)."""

CONNECT_TIMEOUT_S = 5
RECONNECT_S = 15.0  # how long a write keeps retrying a lost server (a restart takes a few seconds)


# -- the records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkRecord:
    fullname: str
    group: str | None
    config: dict[str, Any]
    samples: tuple[float, ...]  # seconds per round

    def checksum(self) -> str:
        """sha256 over what a gate reads: name, configuration and samples (exact float repr)."""
        body = json.dumps([self.fullname, self.config, list(self.samples)], sort_keys=True)
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


def _samples(where: str, data: object) -> tuple[float, ...]:
    if not isinstance(data, list) or not data:
        raise ValueError(f"{where}: no raw timings (stats.data); save runs with --benchmark-save-data")
    try:
        values = tuple(float(x) for x in data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: stats.data must be seconds ({exc})") from None
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{where}: stats.data must be finite, non-negative seconds")
    return values


def run_from_benchmark_json(
    doc: Mapping[str, Any], *, run_id: str = "", tag: str | None = None, run_uuid: str = ""
) -> RunRecord:
    """A pytest-benchmark JSON run (``--benchmark-json`` / history file) as a RunRecord.

    Raises ValueError naming the benchmark when a field is missing or has no raw samples.
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("benchmarks"), list) or not doc["benchmarks"]:
        raise ValueError("not a pytest-benchmark run with benchmarks")
    info = doc.get("machine_info") or {}
    benches = []
    for i, b in enumerate(doc["benchmarks"]):
        if not isinstance(b, Mapping):
            raise ValueError(f"benchmarks[{i}] is not an object")
        name = b.get("fullname") or b.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"benchmarks[{i}] has no fullname")
        extra = b.get("extra_info") or {}
        config = {k: extra[k] for k in CONFIG_KEYS if k in extra}
        benches.append(
            BenchmarkRecord(name, b.get("group"), config, _samples(name, (b.get("stats") or {}).get("data")))
        )
    commit = (doc.get("commit_info") or {}).get("id")
    return RunRecord(
        run_id=run_id,
        created=_parse_time(doc.get("datetime")),
        machine_id=str(info.get("detbench_machine_id") or machine.machine_id()),
        machine={
            "cpu_model": info.get("cpu_model") or machine.cpu_model(),
            "cpu_flags": list(info.get("cpu_flags") or []),
            "logical_cpus": info.get("logical_cpus"),
            "arch": info.get("machine") or platform.machine(),
        },
        versions=dict(info.get("versions") or {}),
        commit=commit if isinstance(commit, str) else None,
        tag=tag if tag is not None else doc.get("detbench_tag"),
        benchmarks=tuple(benches),
        run_uuid=run_uuid or str(doc.get("detbench_run_uuid") or ""),
    )


# -- the interface -------------------------------------------------------------------------------


class HistoryStore(Protocol):
    location: str  # printable: passwords redacted

    def save(self, doc: Mapping[str, Any], *, tag: str | None = None, run_uuid: str | None = None) -> str:
        """Keep one pytest-benchmark run (with raw samples); return its run id."""
        ...

    def load(self, machine_id: str | None = None, limit: int | None = None) -> History:
        """Runs newest first (of one machine class when given) and the problems found reading them."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> HistoryStore: ...

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


class FileStore:
    """The default store: pytest-benchmark JSON files in one directory (``<cache>/history``)."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else history.history_dir()
        self.location = str(self.directory)

    def save(self, doc: Mapping[str, Any], *, tag: str | None = None, run_uuid: str | None = None) -> str:
        extra = {"detbench_tag": tag} if tag else {}
        if run_uuid:
            extra["detbench_run_uuid"] = run_uuid
        return history.save_run({**doc, **extra}, directory=self.directory).stem

    def load(self, machine_id: str | None = None, limit: int | None = None) -> History:
        out = History()
        if not self.directory.is_dir():
            out.problems.append(f"{self.directory}: no such directory")
            return out
        for path in sorted(self.directory.glob("*.json")):
            try:
                record = run_from_benchmark_json(json.loads(path.read_text()), run_id=path.stem)
            except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
                out.problems.append(f"{path}: {exc}")
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


# -- PostgreSQL ----------------------------------------------------------------------------------


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


MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE detbench_machines (
            machine_id   text PRIMARY KEY,
            cpu_model    text NOT NULL,
            cpu_flags    text[] NOT NULL,
            logical_cpus integer,
            arch         text,
            first_seen   timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE detbench_runs (
            run_id       bigserial PRIMARY KEY,
            run_uuid     uuid NOT NULL UNIQUE,
            machine_id   text NOT NULL REFERENCES detbench_machines,
            created_at   timestamptz NOT NULL,
            saved_at     timestamptz NOT NULL DEFAULT now(),
            commit_id    text,
            versions     jsonb NOT NULL,
            n_benchmarks integer NOT NULL
        );
        CREATE INDEX detbench_runs_machine_created ON detbench_runs (machine_id, created_at DESC);
        CREATE TABLE detbench_benchmarks (
            run_id     bigint NOT NULL REFERENCES detbench_runs ON DELETE CASCADE,
            fullname   text NOT NULL,
            group_name text,
            config     jsonb NOT NULL,
            samples    double precision[] NOT NULL,
            checksum   text NOT NULL,
            PRIMARY KEY (run_id, fullname)
        );
    """,
    # Named baselines (release tags) for `detbench gate --history URL --baseline TAG`.
    2: """
        ALTER TABLE detbench_runs ADD COLUMN tag text;
        CREATE INDEX detbench_runs_tag ON detbench_runs (tag) WHERE tag IS NOT NULL;
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)
_LOCK_KEY = 0x64657462  # "detb": one advisory lock for schema changes


def migrate(conn: Any, *, target: int = SCHEMA_VERSION) -> int:
    """Create or upgrade the schema to ``target`` in one transaction; return the version found before."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS detbench_schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        found = conn.execute("SELECT coalesce(max(version), 0) FROM detbench_schema_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise RuntimeError(
                f"schema version {found} is newer than this detbench knows ({SCHEMA_VERSION});"
                " upgrade detbench"
            )
        for version in range(found + 1, target + 1):
            conn.execute(MIGRATIONS[version])
            conn.execute("INSERT INTO detbench_schema_version (version) VALUES (%s)", (version,))
    return found


class PostgresStore:
    """Timed runs in PostgreSQL (psycopg 3). Connects and migrates on construction."""

    def __init__(self, url: str, *, reconnect_s: float = RECONNECT_S) -> None:
        self.url = url
        self.location = redact(url)
        self.reconnect_s = reconnect_s
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError as exc:  # pragma: no cover - psycopg is a dependency
            raise HistoryStoreError(
                self.location, "psycopg is not installed (pip install 'psycopg[binary]')"
            ) from exc
        self._psycopg = psycopg
        if not is_postgres_url(url):
            raise HistoryStoreError(self.location, "not a postgresql:// URL")
        try:
            urlsplit(url).port  # noqa: B018 - raises ValueError on a port that is not a number
            conninfo_to_dict(url)
        except ValueError as exc:
            raise HistoryStoreError(self.location, f"bad URL ({exc})") from None
        except psycopg.ProgrammingError as exc:
            raise HistoryStoreError(self.location, f"bad URL ({_first_line(exc)})") from None
        self._conn = self._connect()
        try:
            migrate(self._conn)
        except (RuntimeError, psycopg.Error) as exc:
            self._conn.close()
            reason = (
                str(exc)
                if isinstance(exc, RuntimeError)
                else f"cannot create the schema ({_first_line(exc)})"
            )
            raise HistoryStoreError(self.location, reason) from None

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except self._psycopg.Error as exc:
            raise HistoryStoreError(self.location, f"cannot connect ({_first_line(exc)})") from None

    def _retrying(self, step: Callable[[Any], Any]) -> Any:
        """Run ``step(conn)``; on a lost connection reconnect (for up to reconnect_s) and run it again.

        Safe for writes: a step is one transaction, and save's run_uuid makes a repeat a no-op.
        """
        deadline = time.monotonic() + self.reconnect_s
        while True:
            try:
                return step(self._conn)
            except self._psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise HistoryStoreError(self.location, f"connection lost ({_first_line(exc)})") from None
            self._conn.close()
            while True:
                try:
                    self._conn = self._connect()
                    break
                except HistoryStoreError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

    # -- writing --

    def save(self, doc: Mapping[str, Any], *, tag: str | None = None, run_uuid: str | None = None) -> str:
        try:
            run = run_from_benchmark_json(doc, tag=tag, run_uuid=run_uuid or str(uuid.uuid4()))
        except ValueError as exc:
            raise HistoryStoreError(self.location, f"refusing the run: {exc}") from None
        return str(self._retrying(lambda conn: self._insert(conn, run)))

    def _insert(self, conn: Any, run: RunRecord) -> int:
        from psycopg.types.json import Jsonb

        with conn.transaction():
            conn.execute(
                "INSERT INTO detbench_machines (machine_id, cpu_model, cpu_flags, logical_cpus, arch)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (machine_id) DO NOTHING",
                (
                    run.machine_id,
                    run.machine["cpu_model"],
                    run.machine["cpu_flags"],
                    run.machine["logical_cpus"],
                    run.machine["arch"],
                ),
            )
            row = conn.execute(
                "INSERT INTO detbench_runs"
                " (run_uuid, machine_id, created_at, commit_id, versions, n_benchmarks, tag)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_uuid) DO NOTHING RETURNING run_id",
                (
                    run.run_uuid,
                    run.machine_id,
                    run.created,
                    run.commit,
                    Jsonb(run.versions),
                    len(run.benchmarks),
                    run.tag,
                ),
            ).fetchone()
            if row is None:  # a retry of a run whose commit reached the server: already complete
                return conn.execute(
                    "SELECT run_id FROM detbench_runs WHERE run_uuid = %s", (run.run_uuid,)
                ).fetchone()[0]
            for bench in run.benchmarks:
                self._insert_benchmark(conn, row[0], bench)
            return row[0]

    def _insert_benchmark(self, conn: Any, run_id: int, bench: BenchmarkRecord) -> None:
        from psycopg.types.json import Jsonb

        conn.execute(
            "INSERT INTO detbench_benchmarks (run_id, fullname, group_name, config, samples, checksum)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (run_id, bench.fullname, bench.group, Jsonb(bench.config), list(bench.samples), bench.checksum()),
        )

    # -- reading --

    def load(self, machine_id: str | None = None, limit: int | None = None) -> History:
        return self._retrying(lambda conn: self._select(conn, machine_id, limit))

    def _select(self, conn: Any, machine_id: str | None, limit: int | None) -> History:
        with conn.transaction():  # one snapshot: runs and their benchmarks agree
            runs = conn.execute(
                "SELECT r.run_id, r.run_uuid, r.machine_id, r.created_at, r.commit_id, r.versions,"
                " r.n_benchmarks, r.tag, m.cpu_model, m.cpu_flags, m.logical_cpus, m.arch"
                " FROM detbench_runs r JOIN detbench_machines m USING (machine_id)"
                " WHERE %(m)s::text IS NULL OR r.machine_id = %(m)s"
                " ORDER BY r.created_at DESC, r.run_id DESC LIMIT %(n)s",
                {"m": machine_id, "n": limit},
            ).fetchall()
            ids = [r[0] for r in runs]
            rows = conn.execute(
                "SELECT run_id, fullname, group_name, config, samples, checksum FROM detbench_benchmarks"
                " WHERE run_id = ANY(%s) ORDER BY run_id, fullname",
                (ids,),
            ).fetchall()
        by_run: dict[int, list[tuple]] = {}
        for row in rows:
            by_run.setdefault(row[0], []).append(row)
        out = History()
        for run_id, run_uuid, mid, created, commit, versions, n_bench, tag, model, flags, cpus, arch in runs:
            benches, bad = _check_rows(run_id, by_run.get(run_id, []))
            out.problems += bad
            if len(by_run.get(run_id, [])) != n_bench:
                out.problems.append(
                    f"run {run_id}: {len(by_run.get(run_id, []))} benchmark rows, the run recorded {n_bench}"
                    " (rows deleted outside detbench?)"
                )
                continue
            if bad:
                continue
            out.runs.append(
                RunRecord(
                    run_id=str(run_id),
                    created=created,
                    machine_id=mid,
                    machine={
                        "cpu_model": model,
                        "cpu_flags": list(flags),
                        "logical_cpus": cpus,
                        "arch": arch,
                    },
                    versions=versions,
                    commit=commit,
                    tag=tag,
                    benchmarks=tuple(benches),
                    run_uuid=str(run_uuid),
                )
            )
        return out

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_rows(run_id: int, rows: list[tuple]) -> tuple[list[BenchmarkRecord], list[str]]:
    benches, problems = [], []
    for _, name, group, config, samples, checksum in rows:
        where = f"run {run_id} benchmark {name!r}"
        try:
            if not isinstance(config, dict):
                raise ValueError("config is not an object")
            bench = BenchmarkRecord(name, group, config, _samples(where, samples))
        except ValueError as exc:
            problems.append(f"{where}: corrupt row ({exc})")
            continue
        if bench.checksum() != checksum:
            problems.append(f"{where}: corrupt row (checksum mismatch: changed outside detbench)")
            continue
        benches.append(bench)
    return benches, problems


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- choosing a store ----------------------------------------------------------------------------


def open_store(target: str | Path | None = None) -> HistoryStore:
    """A PostgresStore for a postgresql:// URL, else a FileStore on the directory (default: the cache's)."""
    if target is None:
        return FileStore()
    text = str(target)
    if "://" in text:
        if is_postgres_url(text):
            return PostgresStore(text)
        raise HistoryStoreError(redact(text), "unknown store; pass a postgresql:// URL or a directory")
    return FileStore(Path(text).expanduser())


def history_target(option: str | None) -> str | None:
    """The shared store asked for: ``--detbench-history`` wins over DETBENCH_HISTORY; None = files only."""
    value = (option or os.environ.get(HISTORY_ENV, "")).strip()
    return value or None


class RunRecorder:
    """Keeps a session's timed run: always in the local file history, also in a shared store if set.

    pytest-benchmark calls its JSON hook once per output; the local copy follows
    history.HistoryRecorder's rules, the shared store gets the first output that carries raw samples.
    A shared store that cannot be reached is ``error`` (one line); the local file is kept regardless.
    """

    def __init__(self, target: str | None, *, tag: str | None = None, local: Path | None = None) -> None:
        self.local = history.HistoryRecorder(local)
        self.target = target
        self.tag = tag
        self.run_uuid = str(uuid.uuid4())
        self.remote_id: str | None = None
        self.error: str | None = None

    def record(self, output_json: Mapping[str, Any], *, enabled: bool) -> Path | None:
        path = self.local.record(output_json, enabled=enabled)
        if not enabled or self.target is None or self.remote_id is not None:
            return path
        if not history.has_raw_data(output_json):
            return path
        try:
            store = open_store(self.target)
            try:
                self.remote_id = store.save(output_json, tag=self.tag, run_uuid=self.run_uuid)
            finally:
                store.close()
            self.error = None
        except HistoryStoreError as exc:
            self.error = f"{exc}; the run was kept locally in {path}"
        return path
