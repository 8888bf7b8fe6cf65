"""What this CPU is and which instruction sets it has, read from /proc/cpuinfo.

Low in the import graph on purpose: the machine id (``perf.machine``) and the ISA-dependent
choices of the runtimes (bf16 OpenVINO, ONNX Runtime's INT8 ``reduce_range``) read the same flags.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path

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


def has_any_flag(*flags: str, fields: Mapping[str, str] | None = None) -> bool:
    """Whether this CPU reports at least one of ``flags`` (each must be one of ISA_FLAGS)."""
    unknown = [f for f in flags if f not in ISA_FLAGS]
    if unknown:
        raise ValueError(f"not tracked in ISA_FLAGS: {unknown}")
    return bool(set(flags) & set(cpu_flags(fields)))
