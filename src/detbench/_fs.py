"""File helpers every stage uses: sha256 of a file or folder, atomic writes, cross-process locks.

The bottom layer: it imports nothing from detbench's stages, so data/, model/, runtimes/ and
everything above can use it without importing each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import filelock

from detbench.errors import CacheError

_CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    """sha256 of one file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_sha256(files: Mapping[str, str]) -> str:
    """sha256 of a set of files given as {relative posix path: file sha256}, sorted by path."""
    h = hashlib.sha256()
    for rel in sorted(files):
        # NUL and newline cannot appear in a posix name or a hex digest: the encoding is unambiguous.
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file's bytes, or of a directory's sorted (relative posix path, file sha256) pairs."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    return tree_sha256(
        {p.relative_to(path).as_posix(): sha256_file(p) for p in path.rglob("*") if p.is_file()}
    )


def copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to a new file ``dst`` (which must not exist) and return the sha256 of the bytes
    written, read once: the digest is of what was copied, even if ``src`` changes meanwhile."""
    h = hashlib.sha256()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(dst, flags, 0o666)
    try:
        with open(src, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader (or a crash) sees the old bytes or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    # os.open with 0o666 (not mkstemp's 0o600) so the file gets the umask's usual permissions.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        view = memoryview(data).cast("B")
        while view:
            written = os.write(fd, view[:_CHUNK])
            view = view[written:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def locked(path: Path, timeout: float = 600) -> Iterator[None]:
    """Hold the cross-process lock ``<path>.lock`` for the duration of the block."""
    lock_path = Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(lock_path), timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise CacheError(
            lock_path, f"lock not acquired within {timeout:g} s; another process holds it"
        ) from None
    try:
        yield
    finally:
        lock.release()
