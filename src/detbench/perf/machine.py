"""Which machine a run is on: CPU identity, instruction-set flags, the environment a report records.

Machine id: the first 12 hex of sha256 over the CPU model, the logical CPU count, the machine
architecture and the CPU's inference-relevant instruction-set flags. The hostname is left out on
purpose: a pool of identical CI runners, or an ephemeral container, keeps one id, while two hosts
with different CPUs never share one (virtual machines often report a generic model name such as
"AMD EPYC", which is why the ISA flags are part of the key). ``DETBENCH_MACHINE_ID`` overrides it,
for owners who want to name a runner class themselves.

``ISA_FLAGS`` is the one list of flags detbench looks at (machine id, report, ISA-dependent paths).
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

from detbench import paths

MACHINE_ID_ENV = "DETBENCH_MACHINE_ID"
MACHINE_ID_LEN = 12
CPUINFO = Path("/proc/cpuinfo")

ISA_FLAGS = (
    # x86: what decides which kernels oneDNN / MLAS / OpenVINO pick for fp32, bf16 and int8.
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    # Arm (the "Features" line): dot product, int8 matmul, bf16, SVE.
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """First value of each key in /proc/cpuinfo (one block per logical CPU; they agree on these)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def read_cpuinfo(path: Path = CPUINFO) -> dict[str, str]:
    try:
        return _cpuinfo_fields(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:  # not Linux: fall back to what platform knows
        return {}


def cpu_model(fields: Mapping[str, str] | None = None) -> str:
    fields = read_cpuinfo() if fields is None else fields
    for key in ("model name", "cpu model", "hardware", "processor"):
        value = fields.get(key, "")
        if value and not value.isdigit():  # x86 "processor" is the CPU index, not a name
            return value
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags(fields: Mapping[str, str] | None = None) -> list[str]:
    """The ISA_FLAGS this CPU has, in ISA_FLAGS order (x86 "flags" or Arm "Features")."""
    fields = read_cpuinfo() if fields is None else fields
    present = set((fields.get("flags") or fields.get("features") or "").split())
    return [f for f in ISA_FLAGS if f in present]


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


def git_commit(repo: Path = paths.REPO_ROOT) -> str | None:
    """HEAD of the checkout detbench runs from; None for an installed wheel or without git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=False
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
