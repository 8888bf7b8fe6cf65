"""Timed runs in PostgreSQL, a database a fleet of runners shares (``DETBENCH_HISTORY=postgresql://…``).

Each run is one transaction (machine, run, every benchmark's raw samples), so a writer killed mid-run
leaves nothing behind; a client-chosen ``run_uuid`` makes a retry after a lost connection idempotent.
Every benchmark row carries a sha256 over its content, and a run its benchmark count: rows edited or
deleted outside detbench are reported by ``load``, never skipped silently. The schema is versioned
(``detbench_schema_version``) and created or migrated on first use, under an advisory lock so
concurrent first writers do not race.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from detbench.errors import HistoryStoreError
from detbench.history import benchjson
from detbench.history.store import BenchmarkRecord, History, RunRecord, is_postgres_url, redact, run_record

CONNECT_TIMEOUT_S = 5
RECONNECT_S = 15.0  # how long a write keeps retrying a lost server (a restart takes a few seconds)


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
            run = run_record(benchjson.parse(doc), tag=tag, run_uuid=run_uuid or str(uuid.uuid4()))
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
        if not isinstance(config, dict):
            problems.append(f"{where}: corrupt row (config is not an object)")
            continue
        try:
            bench = BenchmarkRecord(name, group, config, benchjson.seconds(samples))
        except ValueError as exc:
            problems.append(f"{where}: corrupt row (samples: {exc})")
            continue
        if bench.checksum() != checksum:
            problems.append(f"{where}: corrupt row (checksum mismatch: changed outside detbench)")
            continue
        benches.append(bench)
    return benches, problems


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
