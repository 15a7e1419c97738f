"""Making a write survive a crash: flush a file, and the directory entry that names it.

A rename is atomic but not durable until the directory holding it is flushed;
the checkpoint writer, the spool and the store creator all rename files into
place, so they share these two calls.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush ``path`` (a file or, where the file system allows it, a directory) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (after a create or a rename); silently skipped where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fsync_path(Path(path))
