"""Files: atomic outputs (written to ``PATH.part``, fsynced, then renamed over ``PATH``) and content hashes.

A crash leaves either the old ``PATH`` (or none) and a stray ``PATH.part``,
never a half-written ``PATH``. Used by the built-in sinks and the CrystFEL
adapter's outputs.

An output that exists and is not a regular file (``/dev/null``, a FIFO, a
terminal) is written in place: renaming a file over it would replace the
device itself, which a root process can do (``--misses /dev/null`` once
turned the machine's ``/dev/null`` into a regular file).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from typing import IO, Iterator


def in_place(path: str) -> bool:
    """Whether ``path`` exists and is not a regular file (a device, a FIFO): written directly, never renamed over."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def part_path(path: str) -> str:
    return path if in_place(path) else path + ".part"


def open_part(path: str, *, newline: str = "") -> IO[str]:
    """Open ``PATH.part`` for writing (UTF-8, undecodable bytes of input names kept as they were)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    return open(part_path(path), "w", encoding="utf-8", errors="surrogateescape", newline=newline)


def sync_close(handle: IO[str]) -> None:
    handle.flush()
    try:
        os.fsync(handle.fileno())
    except OSError:  # a device or a FIFO cannot be synced
        pass
    handle.close()


def fsync_dir(path: str) -> None:
    """Make renames in the directory of ``path`` durable."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(paths: list[str]) -> None:
    """Rename each ``PATH.part`` over ``PATH`` (each rename is atomic), then sync the directories."""
    for path in paths:
        if not in_place(path):
            os.replace(part_path(path), path)
    for directory in {os.path.dirname(os.path.abspath(p)) for p in paths}:
        fsync_dir(os.path.join(directory, "x"))


def discard(paths: list[str]) -> None:
    for path in paths:
        if in_place(path):
            continue
        try:
            os.unlink(part_path(path))
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def writing(paths: list[str], *, newline: str = "") -> Iterator[dict[str, IO[str]]]:
    """``{PATH: handle}`` of ``PATH.part`` files: renamed over every ``PATH`` together when the block
    ends normally; closed and removed if anything fails, opening a later one included."""
    handles: dict[str, IO[str]] = {}
    try:
        for path in paths:
            handles[path] = open_part(path, newline=newline)
        yield handles
        for handle in handles.values():
            sync_close(handle)
    except BaseException:
        for handle in handles.values():
            handle.close()
        discard(paths)
        raise
    commit(paths)


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
