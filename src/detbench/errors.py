"""Typed errors. Each names the file or argument at fault, so a user knows where to look."""

from __future__ import annotations

from pathlib import Path


class DetbenchError(Exception):
    """Base class: a problem with the user's input, reported in one line without traceback."""


class _PathError(DetbenchError):
    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(_PathError):
    """A data.yaml, label file or dataset tree is missing or malformed."""


class ImageError(_PathError):
    """An image cannot be decoded, is refused (e.g. a decompression bomb) or is empty."""


class ModelFileError(_PathError):
    """A weights or exported-model file is missing, corrupt, untrusted or does not fit."""


class CacheError(_PathError):
    """A cache entry is corrupt or was tampered with."""


class BackendError(DetbenchError):
    """A backend cannot run the input it was given (batch size, dtype, rank, values)."""


class HistoryError(_PathError):
    """A saved benchmark run cannot be read; never skipped silently."""


class HistoryStoreError(DetbenchError):
    """A history store (PostgreSQL URL or directory) cannot be opened, reached, written or read.

    ``location`` is the store with any password replaced by ``***``, safe to print in CI logs.
    """

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"history store {location}: {reason}")


class StoredArtifactError(HistoryStoreError):
    """An artifact a history store keeps is missing, corrupt or was changed outside detbench: refused."""

    def __init__(self, location: str, sha256: str, reason: str) -> None:
        self.sha256 = sha256
        super().__init__(location, f"artifact {sha256}: {reason}")
