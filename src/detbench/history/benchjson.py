"""The one reader of pytest-benchmark's JSON (``--benchmark-json``, ``--benchmark-autosave``, history files).

``load`` reads a saved run and ``parse`` a document already in memory; both check it the same way
and return a ``SavedRun``. Callers keep what is theirs: the gate keys raw rounds by name, the stores
turn a run into a ``RunRecord``, the report keeps the summary medians. By default every benchmark
must carry its raw rounds (``stats.data``, what ``--benchmark-save-data`` keeps): summary statistics
alone cannot give a significance test, so such runs are refused rather than skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detbench.errors import HistoryError
from detbench.history.artifacts import NOTES_KEY, ArtifactNote, parse_notes
from detbench.runtimes.identity import IDENTITY_KEY, BenchIdentity

SAVE_HINT = "rerun with --benchmark-save-data (or write the run with --benchmark-json)"
TAG_KEY, RUN_UUID_KEY = "detbench_tag", "detbench_run_uuid"  # detbench's own keys, the file store writes them


@dataclass(frozen=True)
class SavedBenchmark:
    fullname: str  # "fullname", else "name"
    group: str | None
    extra_info: dict[str, Any]
    samples: tuple[float, ...] | None  # stats.data: seconds per round; None when not asked for
    median: float | None  # stats.median in seconds, the summary kept without raw rounds too
    identity: BenchIdentity | None = None  # extra_info[IDENTITY_KEY]: what it timed (None: not recorded)


@dataclass(frozen=True)
class SavedRun:
    benchmarks: tuple[SavedBenchmark, ...]
    datetime: Any  # "datetime" as saved (ISO text), None when absent
    commit: str | None  # commit_info.id
    machine_info: dict[str, Any]  # pytest-benchmark's plus detbench's (detbench.perf.machine.machine_info)
    tag: Any  # TAG_KEY and RUN_UUID_KEY as saved, None when absent
    run_uuid: Any
    artifacts: tuple[ArtifactNote, ...] = ()  # what became of the artifacts it timed (NOTES_KEY)


def raw_rounds(entry: Mapping[str, Any]) -> Any:
    """One benchmark entry's ``stats.data`` as saved (None when saved without raw timings)."""
    return (entry.get("stats") or {}).get("data")


def has_raw_data(doc: Mapping[str, Any]) -> bool:
    """True when every benchmark carries its per-round timings (what the gate needs)."""
    benches = doc.get("benchmarks") or []
    return bool(benches) and all(raw_rounds(b) for b in benches)


def seconds(data: object) -> tuple[float, ...]:
    """Per-round timings as seconds; ValueError saying what is wrong (none, not numbers, NaN, negative)."""
    if not isinstance(data, list) or not data:
        raise ValueError("no raw timings")
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a list of seconds ({exc})") from None
    if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("not finite, non-negative seconds")
    return tuple(values.tolist())


def _median(key: str, stats: Mapping[str, Any], *, required: bool) -> float | None:
    try:
        return float(stats["median"])
    except (KeyError, TypeError, ValueError):
        if required:
            raise ValueError(f"benchmark {key!r} has no summary median (stats.median)") from None
        return None


def _benchmark(entry: object, index: int, *, raw: bool) -> SavedBenchmark:
    if not isinstance(entry, Mapping):
        raise ValueError(f"benchmarks[{index}] is not an object; not a pytest-benchmark run")
    key = entry.get("fullname") or entry.get("name")
    if not isinstance(key, str) or not key:
        raise ValueError(f"benchmarks[{index}] has neither 'fullname' nor 'name'")
    stats = entry.get("stats")
    if not isinstance(stats, Mapping):
        raise ValueError(f"benchmark {key!r} has no 'stats'; not a pytest-benchmark run")
    samples = None
    if raw:
        data = stats.get("data")
        if data is None:
            raise ValueError(f"benchmark {key!r} was saved without raw timings; {SAVE_HINT}")
        if not isinstance(data, list) or not data:
            raise ValueError(f"benchmark {key!r} has no timings in stats.data; {SAVE_HINT}")
        try:
            samples = seconds(data)
        except ValueError as exc:
            raise ValueError(f"benchmark {key!r}: stats.data is {exc}") from None
    extra = entry.get("extra_info")
    identity = None
    if isinstance(extra, Mapping) and IDENTITY_KEY in extra:
        try:
            identity = BenchIdentity.from_json(extra[IDENTITY_KEY])
        except ValueError as exc:
            raise ValueError(f"benchmark {key!r}: extra_info.{IDENTITY_KEY} is malformed ({exc})") from None
    return SavedBenchmark(
        fullname=key,
        group=entry.get("group"),
        extra_info=dict(extra) if isinstance(extra, Mapping) else {},
        samples=samples,
        median=_median(key, stats, required=not raw),
        identity=identity,
    )


def parse(doc: object, *, raw: bool = True) -> SavedRun:
    """A pytest-benchmark run; ValueError naming the benchmark and the problem when it is not one.

    ``raw``: every benchmark must carry its raw rounds (finite, non-negative seconds); with
    ``raw=False`` its summary median is enough and ``samples`` is None.
    """
    if not isinstance(doc, Mapping) or "benchmarks" not in doc:
        raise ValueError("no 'benchmarks' list; not a pytest-benchmark run (save one with --benchmark-save)")
    entries = doc["benchmarks"]
    if not isinstance(entries, list):
        raise ValueError("'benchmarks' is not a list; not a pytest-benchmark run")
    if not entries:
        raise ValueError("contains no benchmarks; were they all deselected or run with --benchmark-disable?")
    info = doc.get("machine_info")
    commit = (doc.get("commit_info") or {}).get("id")
    return SavedRun(
        benchmarks=tuple(_benchmark(entry, i, raw=raw) for i, entry in enumerate(entries)),
        datetime=doc.get("datetime"),
        commit=commit if isinstance(commit, str) else None,
        machine_info=dict(info) if isinstance(info, Mapping) else {},
        tag=doc.get(TAG_KEY),
        run_uuid=doc.get(RUN_UUID_KEY),
        artifacts=parse_notes(doc.get(NOTES_KEY)),
    )


def _read_json(path: Path) -> object:
    if not path.exists():
        raise HistoryError(
            path,
            "no such file; pass a run saved by pytest-benchmark (e.g. .benchmarks/<machine>/0001_*.json)",
        )
    if path.is_dir():
        raise HistoryError(path, "is a directory; pass one saved run (a .json file inside it)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(path, f"cannot read the file ({exc}); check its permissions and encoding") from exc
    if not text.strip():
        raise HistoryError(path, f"file is empty (an interrupted save?); {SAVE_HINT}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(
            path,
            f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); was the save interrupted?",
        ) from exc


def load(path: Path | str, *, raw: bool = True) -> SavedRun:
    """``parse`` of a saved run's file; HistoryError naming the file for every problem, never skipped."""
    path = Path(path)
    doc = _read_json(path)
    try:
        return parse(doc, raw=raw)
    except ValueError as exc:
        raise HistoryError(path, str(exc)) from None
