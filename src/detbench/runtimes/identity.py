"""What a timed benchmark ran, as records that travel with its result.

``BenchIdentity`` is written into each benchmark's pytest-benchmark ``extra_info`` (under
``IDENTITY_KEY``) by the plugin's ``timed`` fixture: backend and its settings, the artifact's sha256
and format, the weights' sha256 and the runtime package versions. ``ArtifactContent`` says which
files an artifact is made of and their sha256, so a history store can keep the artifact itself,
content-addressed, and hand back exactly those bytes (detbench.history).

An artifact's sha256 is its file's (what ``sha256sum model.onnx`` prints, and the export cache's), or,
for a folder or an OpenVINO ``.xml`` with its ``.bin``, the sha256 over its files
(``detbench._fs.tree_sha256``; a folder's equals ``sha256_path``). Eager PyTorch runs the weights, a
pickle: it has no artifact, only ``weights_sha256``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

from detbench._fs import sha256_file, tree_sha256
from detbench.jsonsafe import json_safe
from detbench.schema import doc, problems

IDENTITY_KEY = "detbench_identity"  # the extra_info key
RUNTIME_PACKAGES = ("torch", "onnxruntime", "openvino")
WEIGHT_SUFFIXES = (".pt", ".pth")  # pickles: never kept by a store (issue 19: never unpickled unasked)


@dataclass(frozen=True)
class ArtifactFile:
    path: str = doc("posix path relative to the artifact's folder")
    sha256: str = doc("sha256 of the file's bytes")
    size: int = doc("bytes")


@dataclass(frozen=True)
class ArtifactContent:
    """The files an artifact is made of; ``check`` says whether they add up to its sha256."""

    sha256: str = doc("the artifact's identity (the file's sha256, or tree_sha256 over its files)")
    kind: str = doc('"file": one file; "tree": a folder, or an OpenVINO .xml with its .bin')
    entry: str = doc('what a backend loads, relative to the restored folder ("." is the folder)')
    files: tuple[ArtifactFile, ...] = doc("every file, sorted by path")

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return json_safe(self)

    @classmethod
    def from_json(cls, value: Any) -> ArtifactContent:
        """The record of a JSON form; ValueError when it is malformed or does not add up (``check``)."""
        found = problems(value, cls)
        if found:
            raise ValueError("; ".join(found[:3]))
        content = cls(
            sha256=value["sha256"],
            kind=value["kind"],
            entry=value["entry"],
            files=tuple(ArtifactFile(**f) for f in value["files"]),
        )
        content.check()
        return content

    def check(self) -> None:
        """ValueError unless the files add up to ``sha256`` and every path stays inside the folder."""
        names = [f.path for f in self.files]
        for name in names:
            pure = PurePosixPath(name)
            if (
                name != pure.as_posix()
                or pure.is_absolute()
                or name == "."
                or ".." in pure.parts
                or "\\" in name
            ):
                raise ValueError(f"unsafe file path {name!r}")
        if len(set(names)) != len(names) or names != sorted(names):
            raise ValueError("file paths repeated or not sorted")
        if self.kind == "file":
            if len(self.files) != 1 or self.files[0].sha256 != self.sha256 or self.entry != names[0]:
                raise ValueError("a file artifact is one file whose sha256 is the artifact's")
        elif self.kind == "tree":
            if tree_sha256({f.path: f.sha256 for f in self.files}) != self.sha256:
                raise ValueError("its files' sha256 do not add up to the artifact's")
            if self.entry != "." and self.entry not in names:
                raise ValueError(f"entry {self.entry!r} is not one of its files")
        else:
            raise ValueError(f"unknown kind {self.kind!r}")


@dataclass(frozen=True)
class BenchIdentity:
    """What one timed benchmark ran."""

    backend: str = doc("registered backend name")
    precision: str = doc("fp32 | bf16 | int8: the bulk of the arithmetic")
    threads: int = doc("threads the backend ran at")
    batch: int = doc("images per call")
    imgsz: int = doc("input size, px")
    settings: dict[str, Any] = doc("every BackendSettings field (threads, ort_optimization, ...)")
    artifact_format: str | None = doc("export format it loaded; null for eager PyTorch (the weights)")
    artifact_sha256: str | None = doc("the artifact's sha256 (ArtifactContent); null for eager PyTorch")
    artifact_bytes: int | None = doc("the artifact's size; null for eager PyTorch")
    weights_sha256: str = doc("sha256 of the session's weights file (the baseline every backend fits)")
    versions: dict[str, str] = doc(
        "runtime package versions, of those installed: torch, onnxruntime, openvino"
    )

    def to_json(self) -> dict[str, Any]:
        return json_safe(self)

    @classmethod
    def from_json(cls, value: Any) -> BenchIdentity:
        """The record of a JSON form; ValueError naming what is wrong."""
        found = problems(value, cls)
        if found:
            raise ValueError("; ".join(found[:3]))
        return cls(**{f.name: value[f.name] for f in fields(cls)})


# -- building them -----------------------------------------------------------------------------------

_CONTENT: dict[tuple, ArtifactContent] = {}  # by the files' (path, mtime, size): hash each artifact once


def artifact_files(path: Path | str) -> tuple[str, str, dict[str, Path]]:
    """(kind, entry, {relative posix path: file}) of the artifact a backend loads from ``path``."""
    path = Path(path)
    if path.is_dir():
        found = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if p.is_file()}
        return "tree", ".", dict(sorted(found.items()))
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():  # an IR's weights sit beside it
        return "tree", path.name, {path.with_suffix(".bin").name: path.with_suffix(".bin"), path.name: path}
    return "file", path.name, {path.name: path}


def artifact_content(path: Path | str) -> tuple[ArtifactContent, dict[str, Path]]:
    """The artifact at ``path`` as content (sha256 of every file) and where each of its files is."""
    kind, entry, files = artifact_files(path)
    stats = {rel: p.stat() for rel, p in files.items()}
    key = (kind, entry, tuple((str(files[r]), s.st_mtime_ns, s.st_size) for r, s in stats.items()))
    if key not in _CONTENT:
        listed = tuple(ArtifactFile(rel, sha256_file(p), stats[rel].st_size) for rel, p in files.items())
        digest = listed[0].sha256 if kind == "file" else tree_sha256({f.path: f.sha256 for f in listed})
        _CONTENT[key] = ArtifactContent(digest, kind, entry, listed)
    return _CONTENT[key], files


_WEIGHTS: dict[tuple, str] = {}


def weights_sha256(path: Path | str) -> str:
    st = Path(path).stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = sha256_file(path)
    return _WEIGHTS[key]


def runtime_versions() -> dict[str, str]:
    """Versions of the installed runtimes: the imported module's own where loaded (what ran), else the
    installed distribution's, read without importing it."""
    out = {}
    for name in RUNTIME_PACKAGES:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if version is None and importlib.util.find_spec(name) is not None:
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        if version is not None:
            out[name] = str(version)
    return out


def identify(backend: Any, *, weights: Path | str, batch: int, imgsz: int) -> BenchIdentity:
    """The identity of ``backend`` (a loaded ``BaseBackend``) timed at ``batch`` x ``imgsz``."""
    content = None
    if backend.artifact_format is not None and backend.artifact is not None:
        content = artifact_content(backend.artifact)[0]
    settings = asdict(backend.settings)
    return BenchIdentity(
        backend=backend.name,
        precision=backend.precision,
        threads=settings["threads"],
        batch=batch,
        imgsz=imgsz,
        settings=settings,
        artifact_format=backend.artifact_format,
        artifact_sha256=content.sha256 if content else None,
        artifact_bytes=content.size if content else None,
        weights_sha256=weights_sha256(weights),
        versions=runtime_versions(),
    )
