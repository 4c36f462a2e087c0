"""Files written whole or not at all: a temporary file beside the destination, renamed over it.

A kill during the write leaves the old file (or none), never half of one; parallel sweep jobs
writing the same cache file never read each other's partial writes. The temporary file lives
in the destination's folder, so the rename is one step on one file system.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed over ``path`` if the block succeeds,
    removed if it raises (or if nothing was written there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        if tmp.exists():
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", durable: bool = False):
    """``open(path, mode)`` that replaces ``path`` in one step when the block ends without error.
    ``durable``: flushed to disk before the rename (a checkpoint must survive a power cut)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
