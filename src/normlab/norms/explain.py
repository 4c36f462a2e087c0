"""Explain a norm with numbers: which axes it reduces, and how far the native layer is from
the hand formula in fp64, fp32 and bf16.

    python scripts/explain_norm.py group --shape 8 32 16 16
    python scripts/explain_norm.py rms --layout nlc --shape 4 128 256
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings

import torch

from normlab.errors import ConfigError
from normlab.norms import build_norm, canonical, norm_class
from normlab.norms.reference import REFERENCE


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def measure(name: str, layout: str, shape: tuple[int, ...], offset: float, seed: int = 0) -> dict:
    """Max |difference| of native and formula, per precision; bf16 against exact fp64 math."""
    channels = shape[-1] if layout == "nlc" else shape[1]
    g = torch.Generator().manual_seed(seed)
    x64 = torch.randn(shape, generator=g, dtype=torch.float64) + offset
    m = build_norm(name, channels, layout)
    out = {}
    for dtype in (torch.float64, torch.float32):
        layer = copy.deepcopy(m).to(dtype)
        out[str(dtype).split(".")[1]] = max_diff(
            layer(x64.to(dtype)), REFERENCE[name](copy.deepcopy(layer), x64.to(dtype))
        )
    xb = x64.to(torch.bfloat16)
    exact = REFERENCE[name](copy.deepcopy(m).double(), xb.double())  # the same bf16 inputs, exact math
    out["bf16 native (fp32 params, as autocast)"] = max_diff(copy.deepcopy(m)(xb), exact)
    out["bf16 native (bf16 params, model.bfloat16())"] = max_diff(copy.deepcopy(m).bfloat16()(xb), exact)
    out["bf16 step by step"] = max_diff(REFERENCE[name](copy.deepcopy(m).bfloat16(), xb), exact)
    out["fp32 step by step, rounded once to bf16"] = max_diff(
        REFERENCE[name](copy.deepcopy(m).float(), xb.float()).bfloat16(), exact
    )
    return out


def explain(name: str, layout: str, shape: tuple[int, ...], offset: float = 4.0) -> str:
    name = canonical(name)
    cls = norm_class(name)
    channels = shape[-1] if layout == "nlc" else shape[1]
    m = build_norm(name, channels, layout)
    params = ", ".join(f"{n} {tuple(p.shape)}" for n, p in m.named_parameters()) or "none"
    buffers = ", ".join(f"{n} {tuple(b.shape)}" for n, b in m.named_buffers()) or "none"
    lines = [
        f"{name}: {cls.__name__}, layout {layout}, input {tuple(shape)}",
        f"  reduces over   {cls.axes[layout]}",
        "  uses the batch "
        f"{'yes: output of one sample depends on the others in training' if cls.batch_dependent else 'no'}",
        f"  learnable      {params}",
        f"  running stats  {buffers}",
        f"  max |native - formula|, input ~ N({offset:g}, 1):",
    ]
    with warnings.catch_warnings():  # "cannot dispatch to fused implementation": expected here
        warnings.simplefilter("ignore", UserWarning)
        measured = measure(name, layout, shape, offset)
    for key, value in measured.items():
        lines.append(f"    {key:<45} {value:.3g}")
    ulp = 2.0 ** (-8)
    lines += [
        "  why close but not identical:",
        "    fp64/fp32: the kernel sums in another order (blocked, vectorised) than the formula;",
        "      rounding differs at the last bits, ~1e-16 / ~1e-7 relative.",
        f"    bf16: 8 significant bits, so one rounding of y moves it by up to {ulp:g} x |y|. Native kernels",
        "      accumulate mean and variance in fp32 and round once; step by step in bf16, the mean itself",
        "      is rounded, x - mean inherits that error, and 1/std magnifies it. The larger the offset",
        "      of the input relative to its spread, the larger the drift (try --offset 0 and 20).",
        "    bf16 params: with the layer itself cast to bf16 (model.bfloat16()), some CPU kernels (BatchNorm)",
        "      keep their statistics in bf16 and drift like the step-by-step formula; autocast keeps the",
        "      norm's parameters in fp32, which is what trainer=gpu (precision=bf16-mixed) does.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("norm", help="a registered norm name, e.g. batch, group, rms")
    parser.add_argument("--shape", type=int, nargs="+", default=[8, 32, 16, 16])
    parser.add_argument("--layout", choices=["nchw", "nlc"], default=None, help="default: nlc for 3-d shapes")
    parser.add_argument("--offset", type=float, default=4.0, help="mean of the random input")
    args = parser.parse_args(argv)
    layout = args.layout or ("nlc" if len(args.shape) == 3 else "nchw")

    try:
        print(explain(args.norm, layout, tuple(args.shape), args.offset))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
