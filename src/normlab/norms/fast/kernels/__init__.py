"""Hand-written CPU kernels for the norms PyTorch has no kernel for, compiled on first use.

Written as PyTorch ops, a norm makes one pass over the activation per op, forward and
backward; EvoNorm's sigmoid inside the norm took about ten (``norms/evonorm_s0.py``), and the
BatchNorm-like layers' scale and shift three or four where GroupNorm's kernels make two. A C
loop over one block at a time (a sample's channel, or a group) reads it from memory once and
then again from the cache, so that a layer costs what GroupNorm's kernels cost.

The C sources sit beside this file, one per idea (``rows.c``: statistics, scale and shift of
rows; ``evonorm.c``; ``layer2d.c``), built by the machine's C compiler into a per-user cache
(``$NORMLAB_CACHE``, else ``~/.cache/normlab``) the first time a norm asks for them: a second
or two, once per source, machine and compiler. They run on contiguous fp32 tensors on the CPU
and use as many threads as PyTorch (OpenMP). Everything else (CUDA, bf16, fp64, no compiler,
``NORMLAB_CPU_KERNELS=0``) takes the layers' PyTorch path, which the tests check the kernels
against.
"""

from __future__ import annotations

from normlab.norms.fast.kernels.build import image_dims, load, off, ptr, ready, threads, usable, vector

__all__ = ["image_dims", "load", "off", "ptr", "ready", "threads", "usable", "vector"]
