"""History stores without a server: the file store, URL handling, and a shared store that is down."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from _support.runs import benchmark_run
from detbench.errors import HistoryStoreError
from detbench.history import store
from detbench.history.file import FileStore
from detbench.history.recorder import RunRecorder

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_file_store_round_trip(tmp_path):
    fs = FileStore(tmp_path)
    first = fs.save(benchmark_run({"t::a[onnxruntime]": 5.0}, created=T0))
    second = fs.save(
        benchmark_run({"t::a[onnxruntime]": 6.0}, created=T0 + timedelta(hours=1), seed=1), tag="v1"
    )
    hist = fs.load()
    assert hist.problems == []
    assert [r.run_id for r in hist.runs] == [second, first]  # newest first
    assert hist.runs[0].tag == "v1"
    assert hist.runs[0].benchmarks[0].config == {"backend": "onnxruntime", "threads": 1, "batch": 1}
    assert store.find_run(hist.runs, "v1").run_id == second


def test_file_store_saving_a_run_uuid_again_rewrites_its_file(tmp_path):
    """One run_uuid is one run: a second save through the same store replaces the file it wrote."""
    fs = FileStore(tmp_path)
    first = fs.save(benchmark_run({"t::a[onnxruntime]": 5.0}), run_uuid="u1")
    again = fs.save(benchmark_run({"t::a[onnxruntime]": 6.0}, seed=1), run_uuid="u1", tag="v1")
    other = fs.save(benchmark_run({"t::a[onnxruntime]": 7.0}, seed=2), run_uuid="u2")
    assert again == first != other
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted([first, other])
    run = store.find_run(fs.load().runs, first)
    assert (run.run_uuid, run.tag) == ("u1", "v1")
    assert fs.path(first).is_file()


def test_file_store_reports_unreadable_files(tmp_path):
    fs = FileStore(tmp_path)
    fs.save(benchmark_run({"t::a[pytorch]": 5.0}))
    (tmp_path / "broken.json").write_text('{"benchmarks": [')
    doc = benchmark_run({"t::a[pytorch]": 5.0})
    del doc["benchmarks"][0]["stats"]["data"]
    (tmp_path / "nodata.json").write_text(json.dumps(doc))
    hist = fs.load()
    assert len(hist.runs) == 1
    assert len(hist.problems) == 2
    assert any("broken.json" in p for p in hist.problems)
    assert any("nodata.json" in p and "raw timings" in p for p in hist.problems)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ci:s3cret@db.example:5432/bench", "postgresql://ci:***@db.example:5432/bench"),
        ("postgresql://db/bench?user=ci&password=s3cret", "postgresql://db/bench?user=ci&password=***"),
        ("postgresql://ci@db/bench", "postgresql://ci@db/bench"),
    ],
)
def test_redact(url, shown):
    assert store.redact(url) == shown


def test_bad_url_is_one_line_without_password():
    with pytest.raises(HistoryStoreError) as info:
        store.open_store("postgresql://ci:s3cret@db:notaport/bench?sslmode=sometimes")
    message = str(info.value)
    assert "s3cret" not in message and "\n" not in message
    assert message.startswith("history store postgresql://ci:***@db:notaport/bench")


def test_unknown_scheme_is_refused():
    with pytest.raises(HistoryStoreError, match="unknown store"):
        store.open_store("mysql://u:pw@db/x")


def test_unreachable_server_is_one_line(tmp_path):
    url = f"postgresql://ci:s3cret@/bench?host={tmp_path}&port=5999"  # no server on that socket
    with pytest.raises(HistoryStoreError) as info:
        store.open_store(url)
    message = str(info.value)
    assert "cannot connect" in message and "s3cret" not in message and "\n" not in message


def test_unreachable_store_keeps_the_local_file(tmp_path):
    recorder = RunRecorder(f"postgresql://ci:pw@/bench?host={tmp_path}&port=5999", local=tmp_path / "h")
    path = recorder.record(benchmark_run({"t::a[pytorch]": 5.0}), enabled=True)
    assert path is not None and path.exists()
    assert recorder.remote_id is None
    assert "cannot connect" in recorder.error and str(path) in recorder.error


def test_history_target_option_beats_env(monkeypatch):
    monkeypatch.setenv(store.HISTORY_ENV, "postgresql://env/db")
    assert store.history_target(None) == "postgresql://env/db"
    assert store.history_target("postgresql://opt/db") == "postgresql://opt/db"
    monkeypatch.delenv(store.HISTORY_ENV)
    assert store.history_target(None) is None
