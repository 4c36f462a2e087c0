"""Decode a list of image files, and say which ones are not images.

A folder of tens of thousands of JPEGs often holds a few files that are not: a zero-byte file
from a failed copy, an HTML error page saved as ``.jpg``. torchvision's decoder stops at the
first with ``Unsupported image file`` and no file name. Here every file is tried, and the bad
ones are named in one line (or skipped, with a warning that counts them, when the user asks).

The caches of decoded images are keyed by ``files_key``: every file's path, size and
modification time, so a fixed or replaced file is decoded again rather than served stale.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from normlab.errors import ConfigError

log = logging.getLogger(__name__)

SHOWN = 3  # bad files named in the message; the rest are counted


def decode_files(
    files: Sequence[Path], decode: Callable[[Path], torch.Tensor], what: str, skip_bad: bool = False
) -> tuple[list[torch.Tensor], list[int]]:
    """``decode`` every file; return the images and the indices of the files they came from.

    Files that fail to decode are refused in one line (``ConfigError``), or with ``skip_bad``
    left out with a warning.
    """
    images, kept, bad = [], [], []
    for i, f in enumerate(tqdm(files, desc=f"decoding {what}", unit="img", mininterval=2)):
        try:
            images.append(decode(f))
        except (RuntimeError, ValueError, OSError):  # what torchvision and PIL raise for a file that is not an image
            bad.append(f)
            continue
        kept.append(i)
    if bad:
        names = ", ".join(str(f) for f in bad[:SHOWN]) + (f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
        if not skip_bad:
            raise ConfigError(
                f"{len(bad)} of {len(files)} {what} files are not images that can be decoded: {names}. "
                f"Fix: delete or replace them, or add data.skip_bad_images=true to skip them."
            )
        log.warning(
            "skipped %d of %d %s files that are not images (data.skip_bad_images=true): %s",
            len(bad),
            len(files),
            what,
            names,
        )
    if not images:
        raise ConfigError(
            f"none of the {len(files)} {what} files could be decoded. Fix: point data.root at a "
            f"folder of JPEG or PNG images."
        )
    return images, kept


def files_key(files: Sequence[Path], *settings) -> str:
    """A short hash of the files (path, size, modification time) and the settings of the decode."""
    h = hashlib.sha1(repr(settings).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]
