"""Disk checks made before work starts, so a run is refused in a second instead of failing hours later."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipelines.errors import PipelineError


def nearest_existing(path: Path) -> Path:
    """`path` itself, or its closest ancestor that exists (where a missing directory would be created)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: Path, role: str) -> None:
    """Refuse a directory that cannot be written: a read-only mount, missing permissions, a file in the way."""
    base = nearest_existing(path)
    if not base.is_dir():
        raise PipelineError(f"{role} {path}: {base} is a file, not a directory")
    read_only_mount = bool(os.statvfs(base).f_flag & os.ST_RDONLY)
    if read_only_mount or not os.access(base, os.W_OK | os.X_OK):
        where = "is on a read-only file system" if read_only_mount else "is not writable"
        raise PipelineError(f"{role} {path} cannot be written: {base} {where}")


def free_bytes(path: Path) -> int:
    """Bytes available to this user on the file system that holds (or would hold) `path`."""
    return shutil.disk_usage(nearest_existing(path)).free


def check_free_space(path: Path, needed: int, what: str) -> None:
    """Refuse to start when the disk of `path` has less than `needed` bytes free for `what`."""
    free = free_bytes(path)
    if free < needed:
        raise PipelineError(
            f"not enough disk space for {what}: about {format_bytes(needed)} needed, "
            f"{format_bytes(free)} free on the disk of {path}; free some space or choose another directory"
        )


def directory_size(path: Path) -> int:
    """Total size of the files under `path` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def format_bytes(count: float) -> str:
    """A byte count for people: `512 B`, `1.5 MB`, `3.2 GB`."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
