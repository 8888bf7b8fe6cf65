"""Timed runs in PostgreSQL, a database a fleet of runners shares (``DETBENCH_HISTORY=postgresql://…``).

Each run is one transaction (machine, run, every benchmark's raw samples), so a writer killed mid-run
leaves nothing behind; a client-chosen ``run_uuid`` makes a retry after a lost connection idempotent.
Every benchmark row carries a sha256 over its content, and a run its benchmark count: rows edited or
deleted outside detbench are reported by ``load``, never skipped silently. The schema is versioned
(``detbench_schema_version``) and created or migrated on first use, under an advisory lock so
concurrent first writers do not race.

The artifacts a run timed are kept with it, in its transaction: one ``detbench_artifacts`` row per
artifact sha256 (its manifest), one ``detbench_artifact_files`` row per file sha256 (the bytes, kept
once however many artifacts and runs share them), and one ``detbench_run_artifacts`` row per run and
artifact saying whether it was kept or why not. Reads check every file's sha256 before handing it out.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from detbench.errors import HistoryStoreError, StoredArtifactError
from detbench.history import artifacts as arts
from detbench.history import benchjson
from detbench.history.store import BenchmarkRecord, History, RunRecord, is_postgres_url, redact, run_record
from detbench.runtimes.identity import BenchIdentity

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
    # What each benchmark timed (BenchIdentity) and the artifacts themselves (issue 19).
    3: """
        ALTER TABLE detbench_benchmarks ADD COLUMN identity jsonb;
        CREATE TABLE detbench_artifacts (
            sha256     text PRIMARY KEY,
            manifest   jsonb NOT NULL,
            size_bytes bigint NOT NULL,
            stored_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE detbench_artifact_files (
            sha256 text PRIMARY KEY,
            data   bytea NOT NULL
        );
        CREATE TABLE detbench_run_artifacts (
            run_id     bigint NOT NULL REFERENCES detbench_runs ON DELETE CASCADE,
            sha256     text NOT NULL,
            format     text,
            size_bytes bigint,
            stored     boolean NOT NULL,
            reason     text NOT NULL,
            PRIMARY KEY (run_id, sha256)
        );
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)
_LOCK_KEY = 0x64657462  # "detb": one advisory lock for schema changes
# Saving artifacts and pruning them take this lock: a prune must not remove an artifact that a run being
# saved found already stored and references.
_ARTIFACT_LOCK_KEY = 0x64657461


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

    def __init__(
        self, url: str, *, reconnect_s: float = RECONNECT_S, max_artifact_bytes: int | None = None
    ) -> None:
        self.url = url
        self.location = redact(url)
        self.reconnect_s = reconnect_s
        self.max_artifact_bytes = (
            arts.max_bytes_from_env() if max_artifact_bytes is None else max_artifact_bytes
        )
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

    def save(
        self,
        doc: Mapping[str, Any],
        *,
        tag: str | None = None,
        run_uuid: str | None = None,
        artifacts: Mapping[str, arts.Bundle] | None = None,
        refused: Sequence[arts.ArtifactNote] = (),
    ) -> str:
        keep: list[arts.Bundle] = []
        if artifacts or refused:
            doc, keep, _ = arts.plan(doc, artifacts or {}, refused, self.max_artifact_bytes)
        try:
            run = run_record(benchjson.parse(doc), tag=tag, run_uuid=run_uuid or str(uuid.uuid4()))
        except ValueError as exc:
            raise HistoryStoreError(self.location, f"refusing the run: {exc}") from None
        files = self._read_files(keep)
        return str(self._retrying(lambda conn: self._insert(conn, run, keep, files)))

    def _read_files(self, keep: Sequence[arts.Bundle]) -> dict[str, bytes]:
        """Every file of the artifacts to keep, by sha256, read once and checked against its content."""
        out: dict[str, bytes] = {}
        for bundle in keep:
            for f in bundle.content.files:
                if f.sha256 in out:
                    continue
                data = bundle.files[f.path].read_bytes()
                if hashlib.sha256(data).hexdigest() != f.sha256:
                    raise StoredArtifactError(
                        self.location,
                        bundle.content.sha256,
                        f"{bundle.files[f.path]} changed since it was timed",
                    )
                out[f.sha256] = data
        return out

    def _insert(
        self, conn: Any, run: RunRecord, keep: Sequence[arts.Bundle] = (), files: Mapping[str, bytes] = {}
    ) -> int:
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
            if keep:
                self._insert_artifacts(conn, keep, files)
            for note in run.artifacts:
                conn.execute(
                    "INSERT INTO detbench_run_artifacts (run_id, sha256, format, size_bytes, stored, reason)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (row[0], note.sha256, note.format, note.size, note.stored, note.reason),
                )
            return row[0]

    def _insert_benchmark(self, conn: Any, run_id: int, bench: BenchmarkRecord) -> None:
        from psycopg.types.json import Jsonb

        identity = Jsonb(bench.identity.to_json()) if bench.identity is not None else None
        conn.execute(
            "INSERT INTO detbench_benchmarks"
            " (run_id, fullname, group_name, config, samples, checksum, identity)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                run_id,
                bench.fullname,
                bench.group,
                Jsonb(bench.config),
                list(bench.samples),
                bench.checksum(),
                identity,
            ),
        )

    def _insert_artifacts(self, conn: Any, keep: Sequence[arts.Bundle], files: Mapping[str, bytes]) -> None:
        """Each artifact's manifest and each file not kept yet (a tampered copy is refused on reading)."""
        from psycopg.types.json import Jsonb

        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ARTIFACT_LOCK_KEY,))
        present = {
            r[0]
            for r in conn.execute(
                "SELECT sha256 FROM detbench_artifact_files WHERE sha256 = ANY(%s)", (list(files),)
            ).fetchall()
        }
        for sha, data in files.items():
            if sha not in present:
                conn.execute(
                    "INSERT INTO detbench_artifact_files (sha256, data) VALUES (%s, %s)", (sha, data)
                )
        for bundle in keep:
            conn.execute(
                "INSERT INTO detbench_artifacts (sha256, manifest, size_bytes) VALUES (%s, %s, %s)"
                " ON CONFLICT (sha256) DO NOTHING",
                (bundle.content.sha256, Jsonb(bundle.content.to_json()), bundle.content.size),
            )

    # -- artifacts --

    def get_artifact(self, sha256: str, dest: Path) -> Path:
        def fetch(conn: Any) -> tuple[Any, dict[str, bytes]]:
            with conn.transaction():
                row = conn.execute(
                    "SELECT manifest FROM detbench_artifacts WHERE sha256 = %s", (sha256,)
                ).fetchone()
                if row is None:
                    return None, {}
                shas = [f[1] for f in _manifest_files(row[0])]
                data = conn.execute(
                    "SELECT sha256, data FROM detbench_artifact_files WHERE sha256 = ANY(%s)", (shas,)
                ).fetchall()
            return row[0], {s: bytes(d) for s, d in data}

        raw, blobs = self._retrying(fetch)
        if raw is None:
            raise StoredArtifactError(self.location, sha256, "not stored")
        content = arts.parse_content(raw, sha256, self.location)

        def write(sha: str, target: Path) -> str:
            if sha not in blobs:
                raise FileNotFoundError(sha)
            target.write_bytes(blobs[sha])
            return hashlib.sha256(blobs[sha]).hexdigest()

        return arts.restore(content, write, dest, self.location)

    def stored_artifacts(self) -> list[str]:
        rows = self._retrying(
            lambda conn: conn.execute("SELECT sha256 FROM detbench_artifacts ORDER BY sha256").fetchall()
        )
        return [r[0] for r in rows]

    def prune_artifacts(self, keep_runs: int | None = None) -> arts.Pruned:
        def prune(conn: Any) -> arts.Pruned:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ARTIFACT_LOCK_KEY,))
                kept_runs = conn.execute(
                    "SELECT run_id FROM detbench_runs ORDER BY created_at DESC, run_id DESC LIMIT %s",
                    (keep_runs,),
                ).fetchall()
                ids = [r[0] for r in kept_runs]
                removed = conn.execute(
                    "DELETE FROM detbench_artifacts a WHERE NOT EXISTS (SELECT 1 FROM detbench_run_artifacts"
                    " ra WHERE ra.sha256 = a.sha256 AND ra.run_id = ANY(%s)) RETURNING sha256",
                    (ids,),
                ).fetchall()
                conn.execute(
                    "DELETE FROM detbench_artifact_files f WHERE NOT EXISTS (SELECT 1 FROM detbench_artifacts"
                    " a, jsonb_array_elements(a.manifest->'files') e WHERE e->>'sha256' = f.sha256)"
                )
                kept = conn.execute("SELECT sha256 FROM detbench_artifacts ORDER BY sha256").fetchall()
            return arts.Pruned(tuple(sorted(r[0] for r in removed)), tuple(r[0] for r in kept), len(ids))

        return self._retrying(prune)

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
                "SELECT run_id, fullname, group_name, config, samples, checksum, identity"
                " FROM detbench_benchmarks WHERE run_id = ANY(%s) ORDER BY run_id, fullname",
                (ids,),
            ).fetchall()
            note_rows = conn.execute(
                "SELECT run_id, sha256, format, size_bytes, stored, reason FROM detbench_run_artifacts"
                " WHERE run_id = ANY(%s) ORDER BY run_id, sha256",
                (ids,),
            ).fetchall()
        by_run: dict[int, list[tuple]] = {}
        for row in rows:
            by_run.setdefault(row[0], []).append(row)
        notes: dict[int, list[arts.ArtifactNote]] = {}
        for run_id, *note in note_rows:
            notes.setdefault(run_id, []).append(arts.ArtifactNote(*note))
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
                    artifacts=tuple(notes.get(run_id, ())),
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
    for _, name, group, config, samples, checksum, identity in rows:
        where = f"run {run_id} benchmark {name!r}"
        if not isinstance(config, dict):
            problems.append(f"{where}: corrupt row (config is not an object)")
            continue
        try:
            ident = BenchIdentity.from_json(identity) if identity is not None else None
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}: corrupt row (identity: {exc})")
            continue
        try:
            bench = BenchmarkRecord(name, group, config, benchjson.seconds(samples), ident)
        except ValueError as exc:
            problems.append(f"{where}: corrupt row (samples: {exc})")
            continue
        if bench.checksum() != checksum:
            problems.append(f"{where}: corrupt row (checksum mismatch: changed outside detbench)")
            continue
        benches.append(bench)
    return benches, problems


def _manifest_files(raw: Any) -> list[tuple[str, str]]:
    """(path, sha256) of a stored manifest's files, as far as it can be read (parse_content judges it)."""
    files = raw.get("files") if isinstance(raw, dict) else None
    if not isinstance(files, list):
        return []
    return [(str(f.get("path")), str(f.get("sha256"))) for f in files if isinstance(f, dict)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
