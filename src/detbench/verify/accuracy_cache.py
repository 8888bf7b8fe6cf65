"""Accuracy figures kept across runs: one record per backend, keyed by everything that decides them.

Scoring every backend on the val split is the same arithmetic on the same bytes until an input
changes, so ``detbench report`` reuses a record whose key matches instead of scoring again. The key
(``AccuracyKey``) holds the artifact's sha256 (the weights' for eager PyTorch), the backend's name,
precision and settings (threads, ...), the scoring batch, the input size, the scored images' and
labels' sha256 and the class names, NMS's conf / IoU / max_det, the installed versions of detbench and
of every library on the path (torch, onnxruntime, openvino, ultralytics, numpy, pillow, python), the
sha256 of detbench's own source (a checkout's version does not change when its code does) and the CPU's ISA
flags (oneDNN, MLAS and OpenVINO pick their kernels by them). A record lives at
``<cache>/accuracy/<digest[:2]>/<digest>.json``, written atomically; one that cannot be read, was
edited, or was written for another key is ignored (the figures are measured again and it is replaced).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from detbench._fs import atomic_write_text, sha256_file, tree_sha256
from detbench.schema import problems
from detbench.verify.accuracy import VAL_CONF, VAL_IOU, VAL_MAX_DET, AccuracyResult

FORMAT = 1
# Libraries whose code runs between the artifact's bytes and the figures (the runtimes, ultralytics'
# NMS and metrics, numpy, the PNG/JPEG decoder).
LIBRARIES = ("torch", "onnxruntime", "openvino", "ultralytics", "numpy", "pillow")


@dataclass(frozen=True)
class AccuracyKey:
    """What a backend's accuracy figures depend on; equal keys give the same figures."""

    backend: str
    precision: str
    settings: dict[str, Any]  # every BackendSettings field (threads, ORT's optimization level)
    batch: int  # images per call while scoring
    artifact_sha256: str  # the file or folder the backend loaded (eager PyTorch: the weights)
    imgsz: int
    data_sha256: str  # the scored images, their labels and the class names (``data_sha256``)
    images: int
    nms: dict[str, float]  # conf, iou, max_det of the scoring NMS
    versions: dict[str, str]
    source_sha256: str  # detbench's own .py files
    isa: tuple[str, ...]  # cpuinfo.cpu_flags()

    def to_json(self) -> dict[str, Any]:
        return json.loads(_canonical(asdict(self)))

    def digest(self) -> str:
        return hashlib.sha256(_canonical(asdict(self)).encode()).hexdigest()


@dataclass(frozen=True)
class Reused:
    """A record found for a key: its figures and when they were measured."""

    accuracy: AccuracyResult
    measured_at: str  # ISO-8601 UTC


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def data_sha256(images: Sequence[Path], label_for: Any, names: Sequence[str]) -> str:
    """sha256 over the scored images in order, each with its label file's (absent: a background
    image), and the class names."""
    rows = {}
    for i, image in enumerate(images):
        label = Path(label_for(image))
        rows[f"{i:08d}"] = f"{sha256_file(image)}:{sha256_file(label) if label.is_file() else '-'}"
    rows["names"] = hashlib.sha256(json.dumps(list(names)).encode()).hexdigest()
    return tree_sha256(rows)


@cache
def source_sha256() -> str:
    """sha256 over detbench's own .py files: a checkout's edits change it, its version does not."""
    root = Path(__file__).resolve().parent.parent
    return tree_sha256({p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*.py"))})


def versions() -> dict[str, str]:
    """detbench's, python's and ``LIBRARIES``' installed versions (read from their metadata, so the key
    does not depend on which of them this process happens to have imported)."""
    import importlib.metadata

    from detbench import __version__

    out = {"detbench": __version__, "python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def key_for(
    backend: Any,
    *,
    batch: int,
    imgsz: int,
    data: str,
    images: int,
    versions: Mapping[str, str],
    isa: Sequence[str],
    source: str,
) -> AccuracyKey:
    """The key of a loaded backend (``runtimes.backends.BaseBackend``) scored on ``images`` images
    whose ``data_sha256`` is ``data``."""
    from detbench.runtimes.identity import artifact_content

    return AccuracyKey(
        backend=backend.name,
        precision=backend.precision,
        settings=asdict(backend.settings),
        batch=batch,
        artifact_sha256=artifact_content(backend.artifact)[0].sha256,
        imgsz=imgsz,
        data_sha256=data,
        images=images,
        nms={"conf": VAL_CONF, "iou": VAL_IOU, "max_det": VAL_MAX_DET},
        versions=dict(versions),
        source_sha256=source,
        isa=tuple(isa),
    )


class AccuracyStore:
    """The records under ``root`` (``<cache>/accuracy``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: AccuracyKey) -> Path:
        digest = key.digest()
        return self.root / digest[:2] / f"{digest}.json"

    def load(self, key: AccuracyKey) -> tuple[Reused | None, str | None]:
        """(the record, None) on a hit, (None, None) when there is none, (None, why) when the file
        there is unusable: it is then left for ``save`` to replace."""
        path = self.path(key)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return None, f"{path}: unreadable ({exc})"
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            return None, f"{path}: not a format-{FORMAT} accuracy record"
        if doc.get("digest") != _content_digest(doc):
            return None, f"{path}: edited or corrupt (its digest does not match its content)"
        if doc.get("key") != key.to_json():
            return None, f"{path}: written for another key"
        acc, measured_at = doc.get("accuracy"), doc.get("measured_at")
        found = problems(acc, AccuracyResult)
        if found or not isinstance(measured_at, str):
            return None, f"{path}: malformed ({'; '.join(found[:2]) or 'no measured_at'})"
        figures = AccuracyResult(**{f.name: acc[f.name] for f in fields(AccuracyResult)})
        return Reused(figures, measured_at), None

    def save(self, key: AccuracyKey, accuracy: AccuracyResult, measured_at: str) -> Path:
        """Write the record of ``key`` (atomically: a reader sees the old record or the new)."""
        doc: dict[str, Any] = {
            "format": FORMAT,
            "key": key.to_json(),
            "measured_at": measured_at,
            "accuracy": json.loads(_canonical(asdict(accuracy))),
        }
        doc["digest"] = _content_digest(doc)
        path = self.path(key)
        atomic_write_text(path, json.dumps(doc, sort_keys=True, indent=1) + "\n")
        return path


def _content_digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in doc.items() if k != "digest"}).encode()).hexdigest()
