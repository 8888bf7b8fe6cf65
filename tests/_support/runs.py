"""Synthetic pytest-benchmark runs (the JSON ``--benchmark-json`` writes) for history-store tests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from detbench.runtimes.identity import IDENTITY_KEY, BenchIdentity, artifact_content


def _backend(fullname: str) -> str:
    """``t.py::test_x[yolov8n-onnxruntime]`` -> ``onnxruntime``."""
    param = fullname.rpartition("[")[2].rstrip("]")
    return param.rsplit("-", 1)[-1]


def benchmark_run(
    medians_ms: Mapping[str, float],
    *,
    threads: int = 1,
    rounds: int = 30,
    seed: int = 0,
    machine_id: str = "testmachine0",
    created: datetime | None = None,
    spread: float = 0.03,
) -> dict[str, Any]:
    """A run with one benchmark per ``medians_ms`` entry (fullname -> median ms), log-normal rounds.

    Each benchmark's extra_info names its backend (the part after the last ``-``) and ``threads``.
    """
    rng = np.random.default_rng(seed)
    benches = []
    for name, median in medians_ms.items():
        data = (median / 1e3) * np.exp(rng.normal(0.0, spread, rounds))
        benches.append(
            {
                "name": name.rsplit("::", 1)[-1],
                "fullname": name,
                "group": "latency-batch1",
                "params": None,
                "extra_info": {"backend": _backend(name), "threads": threads, "batch": 1},
                "stats": {"data": data.tolist(), "median": float(np.median(data)), "rounds": rounds},
            }
        )
    return {
        "machine_info": {
            "detbench_machine_id": machine_id,
            "cpu_model": "Test CPU",
            "cpu_flags": ["avx2", "fma"],
            "logical_cpus": 2,
            "machine": "x86_64",
            "threads": threads,
            "versions": {"torch": "2.14.1"},
        },
        "commit_info": {"id": f"{seed:040x}"},
        "datetime": (created or datetime.now(UTC)).isoformat(),
        "benchmarks": benches,
    }


def identity(sha: str | None, *, fmt: str | None = "onnx", size: int | None = 10) -> dict:
    """A BenchIdentity's JSON: onnxruntime on the artifact ``sha``, or eager PyTorch (``fmt`` None)."""
    return BenchIdentity(
        backend="onnxruntime" if fmt else "pytorch",
        precision="fp32",
        threads=1,
        batch=1,
        imgsz=128,
        settings={"threads": 1, "ort_optimization": "all"},
        artifact_format=fmt,
        artifact_sha256=sha,
        artifact_bytes=size if sha else None,
        weights_sha256="0" * 64,
        versions={"onnxruntime": "1.0"},
    ).to_json()


def run_with(paths: dict[str, Path | None], *, seed: int = 0) -> dict:
    """A synthetic run whose benchmarks (one per key) timed the artifact at each path (None: eager)."""
    doc = benchmark_run(dict.fromkeys(paths, 5.0), seed=seed)
    for bench, path in zip(doc["benchmarks"], paths.values(), strict=True):
        if path is None:
            bench["extra_info"][IDENTITY_KEY] = identity(None, fmt=None)
            continue
        content = artifact_content(path)[0]
        bench["extra_info"]["artifact"] = str(path)
        bench["extra_info"][IDENTITY_KEY] = identity(content.sha256, size=content.size)
    return doc
