"""The PostgreSQL history store against a real throwaway cluster: concurrency, kills, restarts, corruption."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from _support.processes import sigkill, spawn_python, wait_for
from _support.runs import benchmark_run, run_with
from detbench.errors import HistoryStoreError
from detbench.history import postgres
from detbench.history.file import FileStore
from detbench.history.recorder import RunRecorder

BENCHES = {
    f"tests/benchmarks/t.py::test_latency[{b}]": ms for b, ms in (("pytorch", 9.0), ("onnxruntime", 4.0))
}


def count_runs(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        runs = conn.execute("SELECT count(*) FROM detbench_runs").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM detbench_benchmarks").fetchone()[0]
    return runs, rows


def test_first_use_creates_the_schema_and_round_trips(postgres_url):
    pg = postgres.PostgresStore(postgres_url)
    run_id = pg.save(benchmark_run(BENCHES, threads=2), tag="v0.1")
    hist = pg.load()
    assert hist.problems == []
    (run,) = hist.runs
    assert run.run_id == run_id and run.tag == "v0.1" and run.machine["cpu_flags"] == ["avx2", "fma"]
    original = benchmark_run(BENCHES, threads=2)["benchmarks"]
    got = {b.fullname: b for b in run.benchmarks}
    for b in original:  # raw samples come back bit for bit
        assert list(got[b["fullname"]].samples) == b["stats"]["data"]
        assert got[b["fullname"]].config["threads"] == 2
    with psycopg.connect(postgres_url) as conn:
        assert (
            conn.execute("SELECT max(version) FROM detbench_schema_version").fetchone()[0]
            == postgres.SCHEMA_VERSION
        )
    pg.close()


def test_recorder_saves_one_run_to_the_file_and_the_shared_store(postgres_url, tmp_path):
    """The session's run reaches both stores through Store.save, with one run_uuid and the tag."""
    recorder = RunRecorder(postgres_url, tag="v1", local=tmp_path)
    path = recorder.record(benchmark_run(BENCHES), enabled=True)
    assert recorder.error is None and path is not None and path.is_file()
    local = FileStore(tmp_path).load().runs
    with postgres.PostgresStore(postgres_url) as pg:
        shared = pg.load().runs
    assert [r.run_id for r in shared] == [recorder.remote_id]
    assert [(r.run_uuid, r.tag) for r in local] == [(r.run_uuid, r.tag) for r in shared]
    assert shared[0].run_uuid == recorder.run_uuid and shared[0].tag == "v1"


def test_old_schema_is_migrated(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        postgres.migrate(conn, target=1)  # what a detbench of schema 1 left behind
        assert "tag" not in [c.name for c in conn.execute("SELECT * FROM detbench_runs LIMIT 0").description]
    pg = postgres.PostgresStore(postgres_url)
    pg.save(benchmark_run(BENCHES), tag="v1")
    assert pg.load().runs[0].tag == "v1"
    pg.close()


def test_newer_schema_is_refused(postgres_url):
    postgres.PostgresStore(postgres_url).close()  # creates the schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO detbench_schema_version (version) VALUES (%s)", (postgres.SCHEMA_VERSION + 1,)
        )
    with pytest.raises(HistoryStoreError, match="newer than this detbench"):
        postgres.PostgresStore(postgres_url)


WRITER = """
import sys, pathlib, time
from detbench.history.postgres import PostgresStore
from _support.runs import benchmark_run, run_with
url, worker, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), pathlib.Path(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
pg = PostgresStore(url)  # every writer races the schema creation too
names = {f"t.py::test_{i}[onnxruntime]": 1.0 + i for i in range(4)}
for i in range(n):
    pg.save(benchmark_run(names, seed=worker * 1000 + i), run_uuid=f"{worker:08d}-0000-4000-8000-{i:012d}")
pg.close()
"""


def test_concurrent_writers_lose_no_run(postgres_url, tmp_path):
    writers, runs_each = 8, 5
    go = tmp_path / "go"
    procs = [spawn_python(tmp_path, WRITER, postgres_url, w, runs_each, go) for w in range(writers)]
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    assert count_runs(postgres_url) == (writers * runs_each, writers * runs_each * 4)
    with postgres.PostgresStore(postgres_url) as pg:
        hist = pg.load()
    assert hist.problems == []
    assert sorted(r.run_uuid for r in hist.runs) == sorted(
        f"{w:08d}-0000-4000-8000-{i:012d}" for w in range(writers) for i in range(runs_each)
    )


KILLED = """
import sys, pathlib, time
from detbench.history.postgres import PostgresStore
from _support.runs import benchmark_run, run_with
url, marker = sys.argv[1], pathlib.Path(sys.argv[2])
pg = PostgresStore(url)
insert = pg._insert_benchmark
def slow_insert(conn, run_id, bench):  # stop inside the transaction, after the first benchmark row
    insert(conn, run_id, bench)
    marker.touch()
    time.sleep(600)
pg._insert_benchmark = slow_insert
pg.save(benchmark_run({f"t.py::test_{i}[pytorch]": 2.0 for i in range(3)}))
"""


def test_writer_killed_mid_run_leaves_no_partial_run(postgres_url, tmp_path):
    pg = postgres.PostgresStore(postgres_url)
    pg.save(benchmark_run(BENCHES))
    marker = tmp_path / "inside-transaction"
    proc = spawn_python(tmp_path, KILLED, postgres_url, marker)
    wait_for(marker, proc)
    with psycopg.connect(postgres_url) as conn:  # the child really holds an open, written transaction
        states = conn.execute(
            "SELECT state FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert ("idle in transaction",) in states
    sigkill(proc)
    deadline = time.monotonic() + 30
    while count_runs(postgres_url) != (1, 2) and time.monotonic() < deadline:
        time.sleep(0.1)  # the server notices the dead client and rolls back
    assert count_runs(postgres_url) == (1, 2)
    hist = pg.load()
    assert hist.problems == [] and len(hist.runs) == 1
    pg.close()


def test_restarted_server_is_reconnected(postgres_cluster, postgres_url):
    pg = postgres.PostgresStore(postgres_url)
    pg.save(benchmark_run(BENCHES, seed=1))
    postgres_cluster.restart()
    pg.save(benchmark_run(BENCHES, seed=2))  # the old connection is dead: reconnect and write
    postgres_cluster.stop()
    later = threading.Timer(1.0, postgres_cluster.start)  # down while the write starts, back within 1 s
    later.start()
    try:
        pg.save(benchmark_run(BENCHES, seed=3))
    finally:
        later.join()
    assert len(pg.load().runs) == 3
    pg.close()


def test_server_down_for_good_is_one_line(postgres_cluster, postgres_url):
    pg = postgres.PostgresStore(postgres_url, reconnect_s=1.0)
    postgres_cluster.stop()
    try:
        with pytest.raises(HistoryStoreError) as info:
            pg.save(benchmark_run(BENCHES))
    finally:
        postgres_cluster.start()
    assert "\n" not in str(info.value) and postgres_url.split("?")[0] in str(info.value)


@pytest.mark.parametrize(
    ("sql", "expect"),
    [
        (
            "UPDATE detbench_benchmarks SET samples[1] = samples[1] * 2 WHERE fullname LIKE '%%pytorch%%'",
            "checksum",
        ),
        ("UPDATE detbench_benchmarks SET samples = '{}' WHERE fullname LIKE '%%pytorch%%'", "no raw timings"),
        ("UPDATE detbench_benchmarks SET samples[2] = 'NaN' WHERE fullname LIKE '%%pytorch%%'", "finite"),
        ("UPDATE detbench_benchmarks SET config = '[1]' WHERE fullname LIKE '%%pytorch%%'", "config"),
        ("DELETE FROM detbench_benchmarks WHERE fullname LIKE '%%pytorch%%'", "rows deleted"),
    ],
    ids=["samples-edited", "samples-emptied", "nan", "config", "row-deleted"],
)
def test_corrupted_rows_are_reported(postgres_url, sql, expect):
    pg = postgres.PostgresStore(postgres_url)
    pg.save(benchmark_run(BENCHES, seed=1))
    bad = pg.save(benchmark_run(BENCHES, seed=2))
    with psycopg.connect(postgres_url) as conn:
        conn.execute(sql + " AND run_id = %s", (int(bad),))
    hist = pg.load()
    assert [r.run_id for r in hist.runs] != [] and bad not in [r.run_id for r in hist.runs]
    assert len(hist.problems) == 1 and f"run {bad}" in hist.problems[0] and expect in hist.problems[0]
    pg.close()


def test_artifacts_round_trip_once_per_sha256_and_tampering_is_refused(postgres_url, tmp_path):
    """A run's artifacts are kept in its transaction, once per sha256; an edited row is refused."""
    from detbench.errors import StoredArtifactError
    from detbench.history import artifacts as arts
    from detbench.runtimes.identity import artifact_content

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"an onnx graph" * 100)
    sha = artifact_content(onnx)[0].sha256
    with postgres.PostgresStore(postgres_url) as pg:
        for seed in (0, 1):  # two runs, one artifact
            doc = run_with({"t::a[onnxruntime]": onnx}, seed=seed)
            pg.save(doc, artifacts=arts.collect(doc)[0])
        runs = pg.load().runs
        assert [n.stored for r in runs for n in r.artifacts] == [True, True]
        assert runs[0].benchmarks[0].identity.artifact_sha256 == sha
        assert pg.get_artifact(sha, tmp_path / "out").read_bytes() == onnx.read_bytes()
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT count(*) FROM detbench_artifact_files").fetchone()[0] == 1
            conn.execute(
                "UPDATE detbench_artifact_files SET data = 'edited'::bytea WHERE sha256 = %s", (sha,)
            )
        with pytest.raises(StoredArtifactError, match=sha):
            pg.get_artifact(sha, tmp_path / "again")
        assert not (tmp_path / "again").exists()
        assert pg.prune_artifacts(keep_runs=1).removed == ()  # the newest run still references it


def test_prune_and_size_cap_in_postgres(postgres_url, tmp_path):
    from detbench.history import artifacts as arts
    from detbench.runtimes.identity import artifact_content

    old, new = tmp_path / "old.onnx", tmp_path / "new.onnx"
    old.write_bytes(b"old graph")
    new.write_bytes(b"new graph, longer")
    with postgres.PostgresStore(postgres_url, max_artifact_bytes=12) as pg:
        for path in (old, new):
            doc = run_with({"t::a[onnxruntime]": path})
            bundles, refused = arts.collect(doc)
            pg.save(doc, artifacts=bundles, refused=refused)
        (note,) = pg.load().runs[0].artifacts
        assert not note.stored and "cap of 12" in note.reason
        assert pg.stored_artifacts() == [artifact_content(old)[0].sha256]
        assert pg.prune_artifacts(keep_runs=1).removed == (artifact_content(old)[0].sha256,)
        assert pg.stored_artifacts() == []
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT count(*) FROM detbench_artifact_files").fetchone()[0] == 0
