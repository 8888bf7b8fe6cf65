"""Cross-version goldens: raw head outputs of the committed baseline on fixed inputs, kept in the repo.

Equivalence tests compare backends with each other inside one environment; if a torch (or onnxruntime,
OpenVINO...) release moved every backend's numbers together, they would all still agree. The goldens
pin the numbers themselves: ``fixtures/golden/golden.npz`` holds the ``pytorch`` backend's raw head
(float32, one image per row) on 8 synthetic scenes and ultralytics' two sample photos, and
``golden.json`` records what produced it (versions, CPU, weights sha256) and the sha256 of every
preprocessed input tensor, so a preprocessing change is told apart from a change in model numerics.

INT8 is held to its own goldens as well (``onnxruntime-int8.npz``, ``openvino-int8.npz``): against the
fp32 goldens it can only be held to its quantization bound (10 px, 0.4), which would let a release
move INT8's numbers by several pixels unseen. Its own outputs, recorded once, are held to
``INT8_OWN``, set from the deviation measured between the torch releases of the matrix.

Regeneration is deliberate: ``python scripts/regen_goldens.py`` shows the diff, ``--write`` commits to it.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from detbench import paths
from detbench._fs import atomic_write_bytes, atomic_write_text, sha256_path
from detbench.errors import _PathError
from detbench.runtimes.backends import BaseBackend
from detbench.verify.compare import (
    TOLERANCES,
    Deviation,
    OutputMismatch,
    Tolerance,
    assert_outputs_close,
    deviation,
)

GOLDEN_DIR = paths.FIXTURES / "golden"
STEM = "golden"  # golden.npz / golden.json: eager PyTorch's set; INT8 backends' sets use their names
NPZ_NAME, JSON_NAME = f"{STEM}.npz", f"{STEM}.json"
ARRAY_KEY = "raw"
FORMAT = 1
IMGSZ = 128
PRODUCER = "pytorch"
INT8_PRODUCERS = ("onnxruntime-int8", "openvino-int8")  # each with its own golden set, named after it
SCENE_SEED, SCENE_SPLIT, SCENE_COUNT = 1234, "test", 8
PHOTOS = ("bus.jpg", "zidane.jpg")  # shipped in the ultralytics wheel, so always on disk
_PHOTO_FILES = {Path(p).stem: p for p in PHOTOS}
INPUT_HASH = "sha256 of the little-endian float32 C-order bytes of each preprocessed (3, H, W) tensor"
REGEN_HINT = "python scripts/regen_goldens.py --write"

# Goldens cross torch releases and CPUs, where bit-identity is not promised: the same torch on the
# same weights differed by 2.4e-4 px (box) and 1e-6 (score) between its AVX-512 and AVX2 kernels.
# So no backend is held tighter than this floor here (~8x that); a real numerics change is far above it.
FLOOR = Tolerance(
    box_atol=2e-3,
    score_atol=1e-5,
    rtol=1e-5,
    det_iou=1.0,
    det_score=0.0,
    map_drop=0.0,
    class_map_drop=0.0,
    reason="fp32 rounding across releases and CPUs",
)

# Measured: bit-identical (max abs 0) between torch 2.13.0 and 2.14.1 exports, at 1 and 2 threads and
# at batch 1 and 10, for both INT8 backends (`scripts/regen_goldens.py --backend <name>` run in the
# other tox env). The bound leaves room for an fp32 ulp on another CPU of the same int8 path flipping
# one int8 rounding step (not measurable here), ~80x below INT8's 3.9 px / 0.11 error against fp32,
# the only bound a release moving INT8's numbers had to pass before. test_int8.py shows a real
# recipe change (MinMax instead of percentile calibration) failing it.
INT8_OWN = replace(
    FLOOR,
    box_atol=0.05,
    score_atol=2e-3,
    rtol=1e-3,
    reason="INT8 against its own recorded outputs: bit-identical across releases, threads and batch",
)

# Shown first in messages; every other recorded version still appears in the "this env differs" part.
_KEY_VERSIONS = (
    "torch",
    "torchvision",
    "onnxruntime",
    "openvino",
    "ultralytics",
    "numpy",
    "opencv",
    "python",
)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so equal numbers give byte-identical files (no git churn)


class GoldenError(_PathError):
    """A golden file is missing, corrupt, or does not fit the inputs it claims to describe."""


@dataclass(frozen=True)
class Goldens:
    """One loaded golden set: ``raw[i]`` is the head output for input ``names[i]``."""

    directory: Path
    raw: np.ndarray  # (N, 4 + classes, anchors) float32
    names: tuple[str, ...]
    input_sha256: tuple[str, ...]
    meta: dict[str, Any]
    stem: str = STEM  # golden.npz (eager PyTorch), or an INT8 backend's own set

    @property
    def npz_path(self) -> Path:
        return golden_files(self.directory, self.stem)[1]

    @property
    def json_path(self) -> Path:
        return golden_files(self.directory, self.stem)[0]

    def int8_path_differs(self) -> str | None:
        """Why INT8 on this CPU cannot match these goldens (another int8 path), or None."""
        recorded, here = self.meta["platform"].get("int8_dot"), current_platform()["int8_dot"]
        if recorded == here:
            return None
        return (
            f"{self.stem}'s goldens were made on a CPU {'with' if recorded else 'without'} int8 dot "
            f"products; this one {'has' if here else 'lacks'} them, so INT8 takes another path (ORT "
            "reduce_range, other kernels) and only the bound against fp32 applies"
        )

    @property
    def versions(self) -> dict[str, str]:
        return self.meta["versions"]

    @property
    def weights_sha256(self) -> str:
        return self.meta["weights_sha256"]

    @property
    def imgsz(self) -> int:
        return int(self.meta["imgsz"])


def golden_files(directory: Path, stem: str = STEM) -> tuple[Path, Path]:
    """``(<stem>.json, <stem>.npz)`` in ``directory``: where one golden set lives."""
    return Path(directory) / f"{stem}.json", Path(directory) / f"{stem}.npz"


# ------------------------------------------------------------------------------------------ inputs


def _photo_path(name: str) -> Path:
    from ultralytics.utils import ASSETS

    return Path(ASSETS) / name


def input_sources() -> list[tuple[str, str]]:
    """(name, how it is made) for every golden input, in row order."""
    scenes = [
        (f"scene{i}", f"synth.make_scene(seed={SCENE_SEED}, split={SCENE_SPLIT!r}, index={i}, imgsz={IMGSZ})")
        for i in range(SCENE_COUNT)
    ]
    return scenes + [(Path(p).stem, f"ultralytics/assets/{p}") for p in PHOTOS]


def make_inputs(imgsz: int = IMGSZ) -> tuple[np.ndarray, list[str]]:
    """The golden inputs, preprocessed as every backend's are: ``(x (N, 3, imgsz, imgsz), names)``."""
    from detbench.data.images import load_image
    from detbench.data.synth import make_scene
    from detbench.runtimes.preprocess import preprocess

    images = [make_scene(SCENE_SEED, SCENE_SPLIT, i, IMGSZ)[0] for i in range(SCENE_COUNT)]
    images += [load_image(_photo_path(p)) for p in PHOTOS]
    x, _ = preprocess(images, imgsz)
    return x, [name for name, _ in input_sources()]


def tensor_sha256(t: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(t, dtype="<f4").tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------- running


def compute(backend: BaseBackend, x: np.ndarray) -> np.ndarray:
    """Raw head for each image run on its own, as goldens are made: batch size cannot matter."""
    return backend.run_batched(x, batch=1)


def golden_tolerance(name: str) -> Tolerance:
    """``TOLERANCES[name]``, loosened to no tighter than ``FLOOR`` (see its comment)."""
    tol = TOLERANCES[name]
    return replace(
        tol,
        box_atol=max(tol.box_atol, FLOOR.box_atol),
        score_atol=max(tol.score_atol, FLOOR.score_atol),
        rtol=max(tol.rtol, FLOOR.rtol),
    )


def current_versions() -> dict[str, str]:
    """Everything that can move the numbers: the export toolchain plus preprocessing libraries."""
    import cv2

    from detbench.runtimes.export import package_version as version
    from detbench.runtimes.export import toolchain_versions

    return {
        **toolchain_versions(),
        "torchvision": version("torchvision"),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pillow": version("pillow"),
    }


def current_platform() -> dict[str, Any]:
    import torch

    from detbench.cpuinfo import has_any_flag
    from detbench.runtimes.export import INT8_DOT_FLAGS

    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # INT8 takes another path without int8 dot products (ORT's reduce_range, other kernels).
        "int8_dot": has_any_flag(*INT8_DOT_FLAGS),
    }


def describe_versions(versions: Mapping[str, str], platform_info: Mapping[str, str] | None = None) -> str:
    shown = [f"{k} {versions[k]}" for k in _KEY_VERSIONS if k in versions]
    cpu = (platform_info or {}).get("cpu_capability")
    return ", ".join(shown) + (f" on {cpu}" if cpu else "")


def version_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """``["torch 2.14.1 -> 2.13.0", ...]`` for every key that differs."""
    return [
        f"{k} {old.get(k, 'absent')} -> {new.get(k, 'absent')}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


# ------------------------------------------------------------------------------------ reading/writing


def make_meta(
    x: np.ndarray,
    names: Sequence[str],
    *,
    weights: str,
    weights_sha256: str,
    imgsz: int,
    producer: Mapping[str, Any],
) -> dict[str, Any]:
    """``golden.json`` content for outputs computed on ``x``; ``write_goldens`` adds the file facts."""
    sources = dict(input_sources())
    inputs = []
    for name, t in zip(names, x):
        item = {"name": name, "source": sources.get(name, "custom"), "sha256": tensor_sha256(t)}
        if name in _PHOTO_FILES:  # the photo file too, so a changed asset is told from changed decoding
            item["file_sha256"] = sha256_path(_photo_path(_PHOTO_FILES[name]))
        inputs.append(item)
    return {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "producer": dict(producer),
        "versions": current_versions(),
        "platform": current_platform(),
        "weights": weights,
        "weights_sha256": weights_sha256,
        "imgsz": imgsz,
        "input_hash": INPUT_HASH,
        "inputs": inputs,
    }


def _npz_bytes(raw: np.ndarray) -> bytes:
    # np.savez_compressed's layout, with a fixed timestamp so the bytes depend on the numbers only.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        info = zipfile.ZipInfo(f"{ARRAY_KEY}.npy", date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.ascontiguousarray(raw, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


def write_goldens(directory: Path, raw: np.ndarray, meta: Mapping[str, Any], stem: str = STEM) -> None:
    """Write ``<stem>.npz`` then ``<stem>.json`` (which pins the npz's sha256), each atomically."""
    json_path, npz_path = golden_files(directory, stem)
    if raw.dtype != np.float32 or raw.ndim != 3 or len(raw) != len(meta["inputs"]):
        n = len(meta["inputs"])
        raise ValueError(f"raw: expected float32 (N={n}, C, A), got {raw.dtype} {raw.shape}")
    data = _npz_bytes(raw)
    full = {
        **meta,
        "npz": npz_path.name,
        "npz_sha256": hashlib.sha256(data).hexdigest(),
        "shape": list(raw.shape),
    }
    atomic_write_bytes(npz_path, data)
    atomic_write_text(json_path, json.dumps(full, indent=2, sort_keys=True) + "\n")


def load_goldens(directory: Path = GOLDEN_DIR, stem: str = STEM) -> Goldens:
    """Read and verify a golden set; never unpickles. Raises GoldenError naming the file at fault."""
    directory = Path(directory)
    json_path, npz_path = golden_files(directory, stem)
    if not json_path.is_file():
        raise GoldenError(json_path, f"missing; generate the goldens with `{REGEN_HINT}`")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GoldenError(json_path, f"unreadable: {exc}") from None
    required = ("format", "versions", "weights_sha256", "imgsz", "inputs", "npz_sha256", "shape")
    if not isinstance(meta, dict) or any(k not in meta for k in required):
        raise GoldenError(json_path, f"not a golden description (needs keys {', '.join(required)})")
    if meta["format"] != FORMAT:
        raise GoldenError(json_path, f"format {meta['format']!r}; this detbench reads format {FORMAT}")
    if not npz_path.is_file():
        raise GoldenError(npz_path, f"missing although {json_path.name} describes it; `{REGEN_HINT}`")
    actual = sha256_path(npz_path)
    if actual != meta["npz_sha256"]:
        raise GoldenError(
            npz_path,
            f"sha256 {actual[:16]}… does not match {json_path.name} "
            f"({str(meta['npz_sha256'])[:16]}…): edited, or the two files come "
            f"from different regenerations; `{REGEN_HINT}`",
        )
    try:
        with np.load(npz_path, allow_pickle=False) as f:
            raw = f[ARRAY_KEY]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise GoldenError(
            npz_path,
            f"unreadable as a plain float32 array {ARRAY_KEY!r} (pickled objects are refused): {exc}",
        ) from None
    names = tuple(i["name"] for i in meta["inputs"])
    if raw.dtype != np.float32 or raw.ndim != 3 or list(raw.shape) != meta["shape"] or len(raw) != len(names):
        raise GoldenError(
            npz_path,
            f"array {raw.dtype} {raw.shape} does not fit {json_path.name} "
            f"(float32 {meta['shape']}, {len(names)} inputs)",
        )
    return Goldens(directory, raw, names, tuple(i["sha256"] for i in meta["inputs"]), meta, stem)


# ---------------------------------------------------------------------------------------- comparing


def provenance(goldens: Goldens) -> str:
    """``fixtures/golden/golden.npz`` and who made it, plus how this environment differs."""
    text = f"produced by {describe_versions(goldens.versions, goldens.meta.get('platform'))}"
    changed = version_changes(goldens.versions, current_versions())
    cpu_old = (goldens.meta.get("platform") or {}).get("cpu_capability")
    cpu_new = current_platform()["cpu_capability"]
    if cpu_old and cpu_old != cpu_new:
        changed.append(f"cpu {cpu_old} -> {cpu_new}")
    return text + (f" (this env: {'; '.join(changed)})" if changed else "")


def check_inputs(goldens: Goldens, x: np.ndarray, names: Sequence[str]) -> None:
    """The inputs must regenerate bit for bit, or a diff would blame the model for a preprocessing change."""
    where = paths.shown(goldens.json_path)
    if tuple(names) != goldens.names:
        raise OutputMismatch(
            f"{where}: inputs {list(goldens.names)} recorded, {list(names)} generated; "
            f"the input list changed: `{REGEN_HINT}`"
        )
    bad = [
        f"{n} sha256 {tensor_sha256(t)[:16]}… != recorded {s[:16]}…"
        for n, t, s in zip(names, x, goldens.input_sha256)
        if tensor_sha256(t) != s
    ]
    if bad:
        raise OutputMismatch(
            f"{where} {provenance(goldens)}: preprocessed inputs no longer match the recorded sha256 "
            f"(preprocessing, synth or the ultralytics sample photos changed, not the model): "
            + "; ".join(bad)
        )


def compare_to_goldens(
    backend: BaseBackend,
    goldens: Goldens,
    tol: Tolerance | None = None,
    *,
    x: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> list[Deviation]:
    """Run ``backend`` on the golden inputs and check every row; return the per-input deviations.

    Raises OutputMismatch naming the golden file, each failing input and the versions that produced
    the golden (``fixtures/golden/golden.npz [scene3] produced by torch 2.14.1, ...: box outputs ...``).
    """
    tol = tol or golden_tolerance(backend.name)
    if x is None or names is None:
        x, names = make_inputs(goldens.imgsz)
    check_inputs(goldens, x, names)
    out = compute(backend, x)
    if out.shape != goldens.raw.shape:
        raise OutputMismatch(
            f"{paths.shown(goldens.npz_path)} {provenance(goldens)}: {backend.name} output shape "
            f"{out.shape} != golden {goldens.raw.shape}"
        )
    who = provenance(goldens)
    devs, problems = [], []
    for i, name in enumerate(names):
        label = f"{paths.shown(goldens.npz_path)} [{name}] {who}; {backend.name}"
        try:
            devs.append(assert_outputs_close(goldens.raw[i : i + 1], out[i : i + 1], tol, label=label))
        except OutputMismatch as exc:
            problems.append(str(exc))
    if problems:
        raise OutputMismatch("\n".join(problems))
    return devs


@dataclass(frozen=True)
class GoldenDiff:
    """How a fresh computation differs from the stored goldens (``scripts/regen_goldens.py``)."""

    lines: list[str]
    beyond_tolerance: bool  # numbers, inputs, weights or layout changed: regenerating is a decision


def diff_goldens(old: Goldens, raw: np.ndarray, meta: Mapping[str, Any], tol: Tolerance) -> GoldenDiff:
    """Per input: max abs diff and where (box/score group, channel, anchor); plus every version change."""
    lines, beyond = [], False
    for change in version_changes(old.versions, meta["versions"]):
        lines.append(f"version  {change}")
    cpu_old = (old.meta.get("platform") or {}).get("cpu_capability")
    if cpu_old != meta["platform"]["cpu_capability"]:
        lines.append(f"cpu      {cpu_old} -> {meta['platform']['cpu_capability']}")
    if old.weights_sha256 != meta["weights_sha256"]:
        lines.append(f"weights  sha256 {old.weights_sha256[:16]}… -> {meta['weights_sha256'][:16]}…")
        beyond = True
    new_names = [i["name"] for i in meta["inputs"]]
    if tuple(new_names) != old.names or raw.shape != old.raw.shape:
        lines.append(f"layout   inputs {list(old.names)} {old.raw.shape} -> {new_names} {raw.shape}")
        return GoldenDiff(lines, True)
    for i, item in enumerate(meta["inputs"]):
        name = item["name"]
        if item["sha256"] != old.input_sha256[i]:
            lines.append(
                f"input    {name}: preprocessed tensor changed "
                f"(sha256 {old.input_sha256[i][:12]}… -> {item['sha256'][:12]}…)"
            )
            beyond = True
        d = deviation(old.raw[i : i + 1], raw[i : i + 1])
        if d.max_abs == 0:
            lines.append(f"{name:<9}identical")
            continue
        try:
            assert_outputs_close(old.raw[i : i + 1], raw[i : i + 1], tol)
            verdict = "within tolerance"
        except OutputMismatch:
            verdict, beyond = "BEYOND TOLERANCE", True
        _, c, a = d.worst_index
        lines.append(
            f"{name:<9}max abs {d.max_abs:.3g} ({d.worst_group}, channel {c}, anchor {a}); "
            f"box {d.box_max_abs:.3g} px, score {d.score_max_abs:.3g}: {verdict}"
        )
    return GoldenDiff(lines, beyond)
