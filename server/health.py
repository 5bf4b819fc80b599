"""What ``/healthz`` judges besides the store's own answer: the last writes, and the free space of
``data_dir``.

A store that answers a read can still refuse every write (a full disk: SQLite reads its pages but
cannot append to its journal), so health also remembers whether the last write failed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from server.errors import StorageUnavailable

MIB = 1024 * 1024


@dataclass
class WriteHealth:
    """The last failure of each writer (result store, registry) since its last success."""

    failures: dict[str, str] = field(default_factory=dict)

    def failed(self, writer: str, detail: str) -> None:
        self.failures[writer] = detail

    def succeeded(self, writer: str) -> None:
        self.failures.pop(writer, None)

    @contextlib.contextmanager
    def writing(self, writer: str) -> Iterator[None]:
        """Record how the write in the ``with`` block ends (``StorageUnavailable`` or success)."""
        try:
            yield
        except StorageUnavailable as exc:
            self.failed(writer, exc.detail)
            raise
        self.succeeded(writer)


@dataclass(frozen=True, slots=True)
class DiskSpace:
    free_bytes: int
    free_inodes: int | None  # None where the file system does not count inodes (tmpfs may not)


def disk_space(path: Path) -> DiskSpace:
    """Free space for an unprivileged writer on the file system holding ``path`` (blocking)."""
    stat = os.statvfs(path)
    inodes = stat.f_favail if stat.f_files else None
    return DiskSpace(stat.f_bavail * stat.f_frsize, inodes)


def disk_problem(path: Path, space: DiskSpace, min_free_mb: float) -> str | None:
    """Why ``path``'s disk cannot take writes, or None."""
    if space.free_bytes < min_free_mb * MIB:
        return (
            f"disk full: {path} has {space.free_bytes / MIB:.2f} MiB free, less than"
            f" limits.min_free_disk_mb = {min_free_mb}; free space or move data_dir"
        )
    if space.free_inodes == 0:
        return f"disk full: {path} has no free inodes left; free some or move data_dir"
    return None
