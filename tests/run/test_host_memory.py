"""keep_freed_memory: freed host memory stays with the process for the next allocation."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A fresh process allocates and fills a 256 MB tensor, frees it, and prints by how many MB
# its resident memory fell: by all of it under glibc's defaults (the block was mmapped and is
# unmapped), by none of it when freed memory is kept.
PROBE = """
import sys
from normlab.run.host_memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
import torch
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
t = torch.ones(256 << 18)
full = rss()
del t
print(kept, full - rss())
"""


def released(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; glibc's malloc")
def test_freed_memory_is_kept_where_glibc_would_hand_it_back():
    kept, dropped = released("keep")
    if kept != "True":
        pytest.skip("this C library has no mallopt (not glibc)")
    assert dropped < 16, f"resident memory fell by {dropped} MB after the free"
    _, dropped = released("default")  # the control: without it the same free hands the block back
    assert dropped > 200
