"""The file store: timed runs kept as pytest-benchmark JSON files in one directory (``<cache>/history``).

Every timed pytest-benchmark run (``--benchmark-json`` / ``--benchmark-autosave``) is also copied to
``<cache>/history/<UTC timestamp>_<machine id>.json``, written atomically under a lock, so the gate
can compare any two past runs of one machine (machine identity is in ``detbench.perf.machine``).
It vanishes with an ephemeral CI runner; detbench.history.postgres is the shared store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detbench._fs import atomic_write_text, locked
from detbench.errors import HistoryError
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

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else history_dir()
        self.location = str(self.directory)
        self._saved: dict[str, Path] = {}  # run_uuid -> the file this store object wrote for it

    def save(self, doc: Mapping[str, Any], *, tag: str | None = None, run_uuid: str | None = None) -> str:
        """Write the run to a new file; a run_uuid saved before through this object rewrites its file."""
        extra = {benchjson.TAG_KEY: tag} if tag else {}
        if run_uuid:
            extra[benchjson.RUN_UUID_KEY] = run_uuid
        path = save_run({**doc, **extra}, directory=self.directory, replace=self._saved.get(run_uuid or ""))
        if run_uuid:
            self._saved[run_uuid] = path
        return path.stem

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
            except HistoryError as exc:  # names the file
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
