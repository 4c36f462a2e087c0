"""The CPU kernels' own build (norms/fast/kernels/build.py: cc + ctypes) against cpp_extension.load_inline.

Both ways compile the same rows.c with build.py's flags: (a) as C into a cached library called through the ctypes
wrappers of kernels/rows.py, (b) as C++ (its text #included inside extern "C") with a pybind11 wrapper taking
tensors. The question is which is simpler at equal speed, so this prints what each needs installed, its cold build and
warm load (each in a fresh process and a fresh build folder), the per-call time of rows_moments and rows_affine on a
large and a small image (where call overhead dominates), whether both give the same bits, and the lines each needs.
load_inline's times include importing torch.utils.cpp_extension, which build.load does not need.
"""

import argparse
import ast
import inspect
import os
import shlex
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import timeit
import warnings
from functools import partial

import torch

from normlab.norms.fast.kernels import build, rows

WRAPPER = r"""
extern "C" {
#include "rows.c"
}
static const float *opt(const std::optional<torch::Tensor> &t) { return t ? t->data_ptr<float>() : nullptr; }
std::tuple<torch::Tensor, torch::Tensor> moments(torch::Tensor x, int64_t rows, bool center) {
    auto mean = x.new_empty({rows}), var = x.new_empty({rows});
    rows_moments(x.data_ptr<float>(), mean.data_ptr<float>(), var.data_ptr<float>(), rows, x.numel() / rows, center,
                 at::get_num_threads());
    return {mean, var};
}
torch::Tensor affine(torch::Tensor x, torch::Tensor a, std::optional<torch::Tensor> b,
                     std::optional<torch::Tensor> floor_) {
    auto y = torch::empty_like(x);
    int64_t rows = a.numel();
    rows_affine(x.data_ptr<float>(), y.data_ptr<float>(), a.data_ptr<float>(), opt(b), opt(floor_), rows,
                x.numel() / rows, at::get_num_threads());
    return y;
}
"""


def load_inline_rows(folder: str):
    """rows.c through load_inline, with build.load's fallbacks: the first of build.VARIANTS that builds, else None."""
    from torch.utils import cpp_extension  # imported on first use, as build.load compiles on first use

    # torch's: C++20, -fPIC, -shared. -ffp-contract=off is what -std=c99 implies for gcc: C++ would fuse x a + b
    # into an FMA, and the results would no longer be the C build's bits.
    flags = [f for f in build.FLAGS if f not in ("-std=c99", "-fPIC", "-shared")] + ["-ffp-contract=off"]
    kw = dict(functions=["moments", "affine"], extra_include_paths=[str(build.HERE)], build_directory=folder)
    for extra in build.VARIANTS:
        try:
            return cpp_extension.load_inline("rows_ext", WRAPPER, extra_cflags=flags + extra, extra_ldflags=extra, **kw)
        except (RuntimeError, OSError) as err:  # no compiler, no ninja, a flag it does not take
            error = err
    warnings.warn(f"normlab: building the rows kernels failed; PyTorch path:\n{error}", stacklevel=2)
    return None


def child(way: str, folder: str) -> None:
    """Load (building if the folder is empty) one way in this fresh process; print the seconds it took."""
    os.environ["NORMLAB_CACHE"] = folder
    start = time.perf_counter()
    assert (build.load("rows") if way == "ctypes" else load_inline_rows(folder)) is not None
    print(time.perf_counter() - start)


def timed_load(way: str, folder: str) -> float:
    done = subprocess.run([sys.executable, __file__, "--child", way, folder], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{way} build failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.split()[-1])


def per_call(fns: dict, reps: int, calls: int) -> dict:
    """Median seconds per call of each function, timed in interleaved batches (the order alternates)."""
    times = {k: [] for k in fns}
    for r in range(reps):
        for k in list(fns)[:: 1 if r % 2 else -1]:
            times[k].append(timeit.timeit(fns[k], number=calls) / calls)
    return {k: statistics.median(v) for k, v in times.items()}


def code_lines(source, *names: str) -> int:
    """Non-blank, non-comment lines of a text, or of a module's top-level functions and assignments of these names."""
    if names:
        text, keep = inspect.getsource(source), set(names)
        body = ast.parse(text).body
        got = [n for n in body if keep & {getattr(n, "name", ""), *map(ast.unparse, getattr(n, "targets", []))}]
        assert len(got) == len(names), names
        source = "\n".join(ast.get_source_segment(text, n) for n in got)
    return sum(1 for ln in source.splitlines() if ln.strip() and not ln.strip().startswith(("#", "//", "/*")))


def table(head: list, *rows: list) -> None:
    print("\n| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", type=int, default=3, help="cold builds (and warm loads) of each way")
    ap.add_argument("--reps", type=int, default=200, help="timed batches per kernel and shape")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    from torch.utils import cpp_extension

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    cc = subprocess.run([*build._compiler().split(), "--version"], capture_output=True, text=True).stdout.split("\n")
    print(f"`{shlex.join(['python', *sys.argv])}`  \ntorch {torch.__version__}, Python {sys.version.split()[0]}")
    print(f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), {cc[0]}")
    py_h = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    table(
        ["needs", "ctypes (build.py)", "load_inline"],
        ["compiler", f"C: `{build._compiler()}`", f"C++ with torch's ABI: `{cpp_extension.get_cxx_compiler()}`"],
        ["ninja", "no", f"yes (found: {cpp_extension.is_ninja_available()}; else pip package `ninja`)"],
        ["headers", "libc's", f"Python.h (found: {py_h}), torch's and pybind11 (in the torch wheel)"],
    )

    with tempfile.TemporaryDirectory() as tmp:
        loads, folder = {way: {"cold": [], "warm": []} for way in ("ctypes", "load_inline")}, {}
        for i in range(args.builds):
            for way in list(loads)[:: 1 if i % 2 else -1]:
                folder[way] = tempfile.mkdtemp(dir=tmp)  # the last folder of each way is loaded below
                loads[way]["cold"].append(timed_load(way, folder[way]))
                loads[way]["warm"].append(timed_load(way, folder[way]))
        cell = lambda v: f"{statistics.median(v):.3f} (min {min(v):.3f}, max {max(v):.3f})"
        table(["way", "cold build s", "warm load s"], *[[w, *map(cell, t.values())] for w, t in loads.items()])
        os.environ["NORMLAB_CACHE"] = folder["ctypes"]
        lib, ext = build.load("rows"), load_inline_rows(folder["load_inline"])
    assert lib is not None and ext is not None

    calls = []
    for shape, reps, n in [((32, 64, 32, 32), max(args.reps // 10, 5), 5), ((2, 16, 32, 32), args.reps, 50)]:
        torch.manual_seed(0)
        x, r = torch.randn(shape), shape[0] * shape[1]
        a, b, floor = torch.randn(r), torch.randn(r), torch.randn(r)
        moments = (partial(rows.moments, x, r), partial(ext.moments, x, r, True))
        affine = (partial(rows.affine, x, a, b, floor), partial(ext.affine, x, a, b, floor))
        for kernel, (ct, li) in {"rows_moments": moments, "rows_affine": affine}.items():
            pairs = list(zip(*[o if isinstance(o, tuple) else (o,) for o in (ct(), li())]))
            diff = max((p - q).abs().max().item() for p, q in pairs)
            same = "yes" if all(torch.equal(p, q) for p, q in pairs) else f"no, max diff {diff:.1e}"
            t = per_call({"ctypes": ct, "load_inline": li}, reps, n)
            us = [f"{t[way] * 1e6:.1f}" for way in ("ctypes", "load_inline")]
            calls.append([kernel, "x".join(map(str, shape)), *us, f"{t['load_inline'] / t['ctypes']:.2f}", same])
    table(["kernel", "shape", "ctypes us/call", "load_inline us/call", "inline/ctypes", "same bits"], *calls)

    ours = ("FLAGS", "VARIANTS", "_cache_dir", "_compiler", "_cpu_id", "load", "_build", "ptr", "threads")
    theirs = ("_long", "_lib", "moments", "affine")
    n_ctypes = code_lines(build, *ours) + code_lines(rows, *theirs)
    n_inline = code_lines(WRAPPER + inspect.getsource(load_inline_rows))
    print(
        f"\nLines (non-blank, non-comment) to build, load and call moments and affine: ctypes {n_ctypes} (build.py's "
        f"{', '.join(ours)}; rows.py's {', '.join(theirs)}), load_inline {n_inline} (WRAPPER, load_inline_rows)"
    )


if __name__ == "__main__":
    main()
