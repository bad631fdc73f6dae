"""One writer per directory: an exclusive lock that a run, `prepare` or `train-tokenizer` holds on its target.

The lock is `fcntl.flock` on `<dir>/.lock`, which holds the owner's PID for the error message. The kernel
drops a flock when its process dies, however it dies (even `kill -9`), so a lock left by a killed process is
stale by construction and the next command simply takes it over: no PID guessing, no manual cleanup.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.errors import PipelineError

LOCK_FILE = ".lock"


@contextmanager
def lock_directory(path: str | Path, role: str) -> Iterator[Path]:
    """Hold an exclusive lock on directory `path` (created if missing) for the `with` block.

    `role` names the directory in errors (e.g. "output_dir"). A second holder is refused at once with a
    `PipelineError` naming the PID that holds it. On exit the lock file is removed, and so are directories
    this call created if they are still empty: a command that fails early leaves nothing behind.
    """
    path = Path(path)
    created = _missing_dirs(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PipelineError(f"cannot create {role} {path}: {err.strerror or err}") from None
    try:
        fd = _acquire(path / LOCK_FILE, role, path)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield path
    finally:
        # Unlink while still holding the lock: a process that opened the old file then sees a replaced inode.
        Path(path / LOCK_FILE).unlink(missing_ok=True)
        os.close(fd)
        _remove_empty(created)


def _acquire(lock_path: Path, role: str, directory: Path) -> int:
    """The open, flock-ed descriptor of `lock_path`, with this process's PID written into it."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise PipelineError(f"{role} {directory} is not writable: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PipelineError(
                f"{role} {directory} is in use by another process (pid {owner}); "
                "wait for it to finish or choose another directory"
            ) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # the previous holder removed the file between our open and flock: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _missing_dirs(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:  # deepest first, so a parent is empty once its child is gone
        try:
            directory.rmdir()
        except OSError:  # not empty (the command wrote something) or already gone
            return
