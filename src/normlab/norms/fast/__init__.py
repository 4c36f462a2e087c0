"""The norms' fast paths: the same function as a layer's formula, in fewer passes over memory.

A norm's own module holds its paper's formula as plain PyTorch (``formula``). For the norms
PyTorch has no kernel for, that formula makes one pass over the activation per op, forward and
backward. A fast path computes the same output and gradients in one or two: an autograd
function with its backward in closed form (``normalize.py`` for the layers that scale and shift
x by one factor per block; a function of its own for EvoNorm, LayerNorm2d and SwitchableNorm on
tokens), and on the CPU, C loops (``kernels/``).

Each path is registered for its layer class (``@fast_path(FilterResponseNorm)`` in ``frn.py``
here) and says where it applies: it returns None elsewhere (small inputs, another layout), and
the layer runs its formula. ``AffineNorm.forward`` asks ``run`` first. Under ``torch.compile``
(inductor fuses the formula itself) and inside ``composite_only`` no fast path runs. The
thresholds and what each path gains are measured in docs/performance.md; the tests hold every
path to the formula and to the reference formulas (tests/norms/test_fused.py, test_kernels.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.autograd.function import once_differentiable

# Below this many elements a layer keeps its formula: a fused path's fixed cost, about 100
# small-tensor ops forward and backward, is more than the passes it saves (break-even points:
# docs/performance.md). A path with less fixed cost takes a ``share`` of it (``use_fused``).
FUSED_MIN_ELEMENTS = 1 << 17

PATHS: dict[type[nn.Module], Callable[[nn.Module, torch.Tensor], torch.Tensor | None]] = {}

_COMPOSITE_ONLY = contextvars.ContextVar("composite_only", default=False)

SECOND_ORDER = (
    "create_graph=True asks for gradients of gradients, and normlab's fused norm paths (inputs of "
    f"{FUSED_MIN_ELEMENTS} elements or more, and the C kernels) give first-order gradients only. "
    "Fix: run the forward inside `with normlab.norms.composite_only():` (plain PyTorch, autograd throughout)."
)


def fast_path(layer: type[nn.Module]):
    """Register the decorated ``path(layer, x) -> y or None`` as the fast path of ``layer``'s
    class (that class only: a subclass may change the formula)."""

    def register(path):
        PATHS[layer] = path
        return path

    return register


def run(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The layer's fast path on ``x``, or None where none applies (then the formula runs)."""
    path = PATHS.get(type(layer))
    return None if path is None or plain() else path(layer, x)


@contextlib.contextmanager
def composite_only():
    """Inside the block every norm runs its plain PyTorch formula with autograd throughout: no
    fused autograd function, no C kernel. For gradients of gradients (``create_graph=True``, a
    gradient penalty), which the fused paths' closed-form backwards do not give; slower."""
    token = _COMPOSITE_ONLY.set(True)
    try:
        yield
    finally:
        _COMPOSITE_ONLY.reset(token)


def plain() -> bool:
    """The plain formula: under torch.compile (inductor fuses it) and inside ``composite_only``."""
    return torch.compiler.is_compiling() or _COMPOSITE_ONLY.get()


def use_fused(x: torch.Tensor, share: float = 1.0) -> bool:
    """Whether ``x`` is large enough for a fused path: ``share`` of ``FUSED_MIN_ELEMENTS`` for a
    path with less fixed cost (one autograd function, no nested graph)."""
    return x.numel() >= FUSED_MIN_ELEMENTS * share


def first_order(backward):
    """``once_differentiable``, with a one-line refusal when asked for gradients of gradients."""
    inner = once_differentiable(backward)

    @functools.wraps(backward)
    def checked(ctx, *grads):
        if torch.is_grad_enabled():  # the engine enables grad in backward only for create_graph=True
            raise RuntimeError(SECOND_ORDER)
        return inner(ctx, *grads)

    return checked
