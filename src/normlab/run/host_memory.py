"""Keep freed host memory for reuse, as PyTorch's caching allocator does on GPUs.

On the CPU, PyTorch takes its tensors from the C library's malloc. glibc serves large blocks
with mmap and hands them back to the system when they are freed (and trims the top of its heap
once more than a threshold is free there), so the next step's activations arrive as fresh
pages: a page fault each 4 KB, and the kernel zeroes every page. A training step frees and
allocates the same sizes every time, so none of that is needed. On this project's virtual
machine (2 cores, 2026-12-01) a ResNet-20 step took 7-11% less time at batch 32 with freed
memory kept, 19% less at batch 128 (GroupNorm), the same at batch 2; the first touch of a fresh
8 MB buffer cost about as much as a norm kernel that fills it.

The price: the process's resident memory stays at its peak instead of shrinking between steps,
as on a GPU. ``trainer.keep_freed_memory=false`` leaves malloc as it was. Other C libraries
(musl, macOS, Windows) have no ``mallopt``; there this is a no-op.
"""

from __future__ import annotations

import ctypes
import functools
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
LIMIT = 1 << 30  # blocks up to 1 GiB from the heap, and never trimmed below 1 GiB free


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse; whether it took (once per process)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, LIMIT)) and bool(mallopt(M_MMAP_THRESHOLD, LIMIT))


def keep_freed_memory_if_asked(cfg) -> bool:
    """``keep_freed_memory()`` unless the run's config says ``trainer.keep_freed_memory=false``."""
    return bool(cfg.trainer.get("keep_freed_memory", True)) and keep_freed_memory()
