"""Which machine a run is on: CPU identity, instruction-set flags, the environment a report records.

Machine id: the first 12 hex of sha256 over the CPU model, the logical CPU count, the machine
architecture and the CPU's inference-relevant instruction-set flags. The hostname is left out on
purpose: a pool of identical CI runners, or an ephemeral container, keeps one id, while two hosts
with different CPUs never share one (virtual machines often report a generic model name such as
"AMD EPYC", which is why the ISA flags are part of the key). ``DETBENCH_MACHINE_ID`` overrides it,
for owners who want to name a runner class themselves.

``ISA_FLAGS`` (in ``detbench.cpuinfo``, low in the import graph so the runtimes can read it) is the
one list of flags detbench looks at (machine id, report, ISA-dependent paths).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detbench.cpuinfo import (  # noqa: F401 - cpu facts re-exported with the identity built on them
    CPUINFO,
    ISA_FLAGS,
    _cpuinfo_fields,
    cpu_flags,
    cpu_model,
    read_cpuinfo,
)

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
    """What pytest-benchmark's machine_info lacks for CPU inference: CPU model, ISA, versions, threads.
    Only what is stable across runs of one machine (pytest-benchmark warns when it differs)."""
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


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def git_commit(repo: Path | None = None) -> str | None:
    """HEAD of the git checkout the user runs detbench in (default: the working directory); None
    outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def environment(threads: int) -> dict[str, Any]:
    """``machine_info`` plus what changes from run to run (usable cores, load, platform, commit):
    the environment a report records."""
    info = machine_info(threads)
    return {
        "cpu_model": info["cpu_model"] or "unknown",
        "cpu_flags": info["cpu_flags"],
        "logical_cpus": info["logical_cpus"],
        "usable_cpus": usable_cpus(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "threads": threads,
        "platform": platform.platform(),
        "versions": info["versions"],
        "git_commit": git_commit(),
        "machine_id": info["detbench_machine_id"],
    }
