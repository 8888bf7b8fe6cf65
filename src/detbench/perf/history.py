"""Which machine a benchmark ran on, and the history of timed runs kept in the cache.

Machine id: the first 12 hex of sha256 over the CPU model, the logical CPU count, the machine
architecture and the CPU's inference-relevant instruction-set flags. The hostname is left out on
purpose: a pool of identical CI runners, or an ephemeral container, keeps one id, while two hosts
with different CPUs never share one (virtual machines often report a generic model name such as
"AMD EPYC", which is why the ISA flags are part of the key). ``DETBENCH_MACHINE_ID`` overrides it,
for owners who want to name a runner class themselves.

History: every timed pytest-benchmark run (``--benchmark-json`` / ``--benchmark-autosave``) is also
copied to ``<cache>/history/<UTC timestamp>_<machine id>.json``, written atomically under a lock,
so the gate can compare any two past runs of one machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The CPU reader lives below the runtimes (which choose ISA-dependent paths with it); these names
# stay importable from here, where the machine id and the report have always read them.
from detbench.cpuinfo import (  # noqa: F401 - re-exported
    CPUINFO,
    ISA_FLAGS,
    _cpuinfo_fields,
    cpu_flags,
    cpu_model,
    read_cpuinfo,
)
from detbench.paths import cache_dir
from detbench.runtimes.cache import atomic_write_text, locked

MACHINE_ID_ENV = "DETBENCH_MACHINE_ID"
MACHINE_ID_LEN = 12


def machine_id(fields: Mapping[str, str] | None = None) -> str:
    """Short stable id of this machine's CPU (see the module docstring); DETBENCH_MACHINE_ID wins."""
    override = os.environ.get(MACHINE_ID_ENV, "").strip()
    if override:
        return override
    fields = read_cpuinfo() if fields is None else fields
    key = "|".join([cpu_model(fields), str(os.cpu_count() or 0), platform.machine(), *cpu_flags(fields)])
    return hashlib.sha256(key.encode()).hexdigest()[:MACHINE_ID_LEN]


def machine_info(threads: int) -> dict[str, Any]:
    """What pytest-benchmark's machine_info lacks for CPU inference: CPU model, ISA, versions, threads."""
    from detbench.runtimes.export import toolchain_versions

    fields = read_cpuinfo()
    return {
        "detbench_machine_id": machine_id(fields),
        "cpu_model": cpu_model(fields),
        "cpu_flags": cpu_flags(fields),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "versions": toolchain_versions(),
    }


# -------------------------------------------------------------------------------------------------
# History of timed runs


def history_dir() -> Path:
    return cache_dir("history")


def has_raw_data(output_json: Mapping[str, Any]) -> bool:
    """True when every benchmark carries its per-round timings (what the gate needs)."""
    benches = output_json.get("benchmarks") or []
    return bool(benches) and all((b.get("stats") or {}).get("data") for b in benches)


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


class HistoryRecorder:
    """Copies a session's benchmark JSON into the history once.

    pytest-benchmark calls its JSON hook once per output (``--benchmark-json`` and the autosave);
    the first is kept unless a later one carries raw timings the first lacked.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.path: Path | None = None
        self._with_data = False

    def record(self, output_json: Mapping[str, Any], *, enabled: bool) -> Path | None:
        """Save ``output_json`` when timing was enabled; returns the history file (None if skipped)."""
        if not enabled:
            return None
        with_data = has_raw_data(output_json)
        if self.path is not None and (self._with_data or not with_data):
            return self.path
        self.path = save_run(output_json, directory=self.directory, replace=self.path)
        self._with_data = with_data
        return self.path
