"""Compile a kernel source with the machine's C compiler, cache the library, load it with ctypes."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import warnings
from pathlib import Path

import torch

from normlab.atomic import atomic_path

HERE = Path(__file__).parent
# -fno-trapping-math lets the compiler turn the branches of clamps and masks into vector selects;
# -fno-math-errno lets sqrt be one instruction. No -ffast-math: it would assume no NaN, and a
# diverged run must still show NaN where PyTorch's kernels do.
FLAGS = ["-O3", "-std=c99", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math"]
# Tried in this order; the first that compiles is kept. -march=native: the library is built on
# the machine that runs it (the cache key holds the CPU's flags). OpenMP for PyTorch's thread
# count; a compiler without it builds the single-threaded loops.
VARIANTS = [["-march=native", "-fopenmp"], ["-fopenmp"], ["-march=native"], []]


_switched_off = 0  # depth of ``off()`` blocks


def enabled() -> bool:
    return not _switched_off and os.environ.get("NORMLAB_CPU_KERNELS", "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


@contextlib.contextmanager
def off():
    """The layers' PyTorch path inside the block (the benchmark times both paths in one process)."""
    global _switched_off
    _switched_off += 1
    try:
        yield
    finally:
        _switched_off -= 1


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these tensors: contiguous fp32 on the CPU, kernels on."""
    return (
        enabled()
        and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)
        and not torch.compiler.is_compiling()
    )


def ready(name: str, *tensors: torch.Tensor) -> bool:
    """Whether the kernels of ``<name>.c`` are built and can take these tensors."""
    return usable(*tensors) and load(name) is not None


def ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


def vector(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` as the flat, contiguous fp32 array a kernel's per-channel or per-row pointer reads
    (detached: the kernels' gradients are written by hand); None stays None, a NULL pointer."""
    return None if t is None else t.detach().float().contiguous().flatten()


def image_dims(x: torch.Tensor) -> tuple[int, int, int]:
    """(N, C, S) of an (N, C, ...) image: samples, channels, values per channel."""
    n, c = x.shape[0], x.shape[1]
    return n, c, x.numel() // max(n * c, 1)


def threads() -> ctypes.c_int:
    return ctypes.c_int(torch.get_num_threads())


def _cache_dir() -> Path:
    root = os.environ.get("NORMLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "normlab"
    )
    return Path(root) / "kernels"


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc.split()[0]):
            return cc
    return None


def _cpu_id() -> str:
    try:  # the CPU's feature flags: a library built with -march=native runs only where they match
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), platform.processor())
    except OSError:
        return platform.processor()


@functools.cache
def load(name: str) -> ctypes.CDLL | None:
    """The library built from ``<name>.c`` (and the headers beside it), or None, with a warning
    once, if there is no working C compiler."""
    cc = _compiler()
    if cc is None:
        warnings.warn("normlab: no C compiler found; the custom norms run on their PyTorch path", stacklevel=2)
        return None
    source = HERE / f"{name}.c"
    text = b"".join(p.read_bytes() for p in [source, *sorted(HERE.glob("*.h"))])
    key = hashlib.sha256(
        b"\0".join([text, cc.encode(), " ".join(FLAGS).encode(), _cpu_id().encode(), platform.machine().encode()])
    ).hexdigest()[:16]
    lib = _cache_dir() / f"{name}-{key}.so"
    if not lib.exists():
        error = _build(cc, source, lib)
        if error is not None:
            warnings.warn(
                f"normlab: building the {name} kernels failed, the norms run on their PyTorch path:\n{error}",
                stacklevel=2,
            )
            return None
    return ctypes.CDLL(str(lib))


def _build(cc: str, source: Path, lib: Path) -> str | None:
    """Compile ``source`` into ``lib``; None, or what went wrong."""
    error = ""
    try:
        with atomic_path(lib) as tmp:  # parallel sweep jobs may build at once
            for extra in VARIANTS:
                cmd = [*cc.split(), *FLAGS, *extra, f"-I{HERE}", str(source), "-o", str(tmp), "-lm"]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode == 0:
                    return None
                error = done.stderr.strip()[-2000:]
                tmp.unlink(missing_ok=True)
    except OSError as err:  # a cache that cannot be written (NORMLAB_CACHE moves it), a compiler that cannot start
        return f"{err}. Fix: point NORMLAB_CACHE at a writable folder."
    return error
