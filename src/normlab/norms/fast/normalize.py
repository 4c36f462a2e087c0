"""How the hand-written norms normalize: statistics of x in one pass, autograd only on the small
tensors computed from them, and one closed-form pass back.

Most norms PyTorch has no kernel for scale and shift x with coefficients shared by a block of
x (a sample and channel, a channel, a sample, a group), computed from the blocks' moments:

    y = normalize(x, dims, coeffs, *params)           # with
    mean, var = moments of x over dims                # (N, C, 1, 1), (1, 1, C), ...: one pass
    a, b      = coeffs(mean, var, *params)            # the paper's formula, on a few thousand numbers
    y         = x * a + b                             # one pass;  FRN: max(x * a + b, floor)

and backward, with da = sum(dy * x) and db = sum(dy) per block, autograd takes them through
``coeffs`` to dmean, dvar and the parameters' gradients, and

    dx = dy * a + dmean / n + dvar * 2 (x - mean) / n  =  dy * a + x * p + q   (p, q per block)

is two fused multiply-adds. Written as broadcasting tensor ops with autograd instead, the same
layer makes a pass over the activation per op, forward and backward: BLN, FRN or Batch Renorm
cost 5 to 13 times native GroupNorm on a 32x64x32x32 activation, and ``torch.var_mean`` alone
took 14-22 ms where a mean and a second pass take 3 (measured 2026-11-23 on a CPU, one
thread, torch 2.14). Statistics are computed in fp32 at least (``precision.py``); the output
is rounded once, to x's dtype. A floor's mask (FRN's TLU) is taken before that rounding: from
the output itself in fp32 and fp64, kept as bools for bf16 and fp16 outputs.

What a pass costs, on a CPU: an op that writes a new activation-sized tensor costs 2-3x the
same op in place (allocation, and memory touched for the first time), so each layer allocates
its output forward and dx backward and little else, as GroupNorm's kernels do; the
statistics kernel's normalized output becomes the layer's output in place. The rest is fixed
cost, about a hundred small-tensor ops per call (coefficients, their autograd): 1-2 ms, which
is why small inputs keep the layer's formula.

On the CPU, for contiguous fp32 x whose blocks are rows (a sample's channel), the passes are
C loops (``kernels/rows.c``): the moments in one read of each row, ``x a + b`` and the
floor in one pass, the two sums in one and dx in one more, without the normalized copy and the
in-place passes PyTorch's kernels need. Elsewhere (GPUs, bf16, no C compiler) the same
function runs on PyTorch's kernels as described above.
"""

from __future__ import annotations

import math

import torch
from torch.autograd import Function

from normlab.norms.fast import first_order, kernels
from normlab.norms.fast.kernels import rows
from normlab.norms.fast.moments import trailing
from normlab.norms.precision import upcast


def stat_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def sum_squares(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """sum(t^2) over ``dims`` (kept). ``vector_norm`` reads contiguous rows in one fast pass but
    loops slowly over any other axis: 12.6 ms over C of a 32x64x32x32 input, against 0.7 ms for
    a product and a sum (measured 2026-11-23, one CPU thread)."""
    if trailing(t, dims) and t.is_contiguous():
        return torch.linalg.vector_norm(t, dim=dims, keepdim=True).square_()
    return (t * t).sum(dims, keepdim=True)


def scale_rows(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``x * a + b`` in x's dtype, computed with a's (fp32 factors, one rounding).

    When a and b have one value per contiguous row of x (per sample and channel of an image),
    this is BatchNorm's inference with mean 0 and variance 1 over rows as channels, whose
    kernel applies it in one vectorized pass: 0.8 ms against 1.26 ms for addcmul (measured
    2026-11-23, 32x64x32x32, one thread).
    """
    reduced = tuple(d for d in range(x.dim()) if a.shape[d] == 1 and x.shape[d] != 1)
    b = b.expand(a.shape) if b is not None and fits(b, a) else b  # beta per channel, a per row
    if b is not None and a.shape == b.shape and reduced and trailing(x, reduced) and x.is_contiguous():
        rows = a.numel()
        a, b = a.to(x.dtype), b.to(x.dtype)  # fp32 from bf16 parameters (a layer cast to bf16); else no-op
        zero, one = a.new_zeros(rows), a.new_ones(rows)
        y = torch.batch_norm(x.view(1, rows, -1), a.reshape(rows), b.reshape(rows), zero, one, False, 0.0, 0.0, False)
        return y.view_as(x)
    y = torch.addcmul(b, x, a) if b is not None else x * a
    return y.to(x.dtype)


def fits(t: torch.Tensor, block: torch.Tensor) -> bool:
    """Whether ``t`` broadcasts to ``block``'s shape: one value per block, or per group of blocks."""
    # Not torch.broadcast_shapes: its Python checks cost a tenth of a millisecond per call here.
    shape = (1,) * (block.dim() - t.dim()) + tuple(t.shape)
    return len(shape) == block.dim() and all(s in (1, b) for s, b in zip(shape, block.shape))


def sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return t.sum_to_size(shape) if t.shape != shape else t


def block_sums(dy: torch.Tensor, x: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """sum(dy * x) and sum(dy) over the blocks of ``shape`` (x's shape with size-1 dims), in fp32 at least.

    When the blocks are contiguous rows of x (statistics over trailing dims), GroupNorm's
    backward kernel with one group per row, mean 0 and 1/std 1 computes both in one pass: its
    dgamma is sum(dy * (x - mean) / std) and its dbeta sum(dy), per group. 0.7 ms against
    1.1 ms for a product and two sums (measured 2026-11-23, 32x64x32x32, one thread).
    """
    reduced = tuple(d for d in range(x.dim()) if shape[d] == 1 and x.shape[d] != 1)
    full = x.dtype == dy.dtype == stat_dtype(x)  # fp32 or fp64: the kernel's sums come back in x's dtype
    if full and reduced and trailing(x, reduced) and dy.is_contiguous() and x.is_contiguous():
        rows, k = math.prod(shape), math.prod(x.shape[d] for d in reduced)
        zero, one = x.new_zeros(1, rows), x.new_ones(1, rows)
        _, g_a, g_b = torch.ops.aten.native_group_norm_backward(
            dy.view(1, rows, k), x.view(1, rows, k), zero, one, None, 1, rows, k, rows, [False, True, True]
        )
        return g_a.view(shape), g_b.view(shape)
    return sum_to(upcast(dy) * upcast(x), shape), sum_to(upcast(dy), shape)


def _centered(x: torch.Tensor, dims: tuple[int, ...]):
    """mean and var of x over ``dims``, and a new tensor ``(x - mean) * unit`` with ``unit``
    per block, for the output to be written over: the layer then allocates only its output."""
    if trailing(x, dims) and x.is_contiguous():
        # Rows of x: GroupNorm's kernel computes their moments and (x - mean) / std in one
        # vectorized call. eps = 1e-30 keeps constant rows finite (0 * 1e15), and is below
        # fp32's resolution for any variance that is not itself negligible.
        shape = x.shape[: x.dim() - len(dims)] + (1,) * len(dims)
        rows = x.reshape(-1, 1, math.prod(x.shape[d] for d in dims))
        y, mean, rstd = torch.native_group_norm(rows, None, None, rows.shape[0], 1, rows.shape[2], 1, 1e-30)
        std = rstd.reciprocal().view(shape)
        return mean.view(shape), (std * std).sub_(1e-30).clamp_(min=0), y.view_as(x), std
    mean = x.mean(dims, keepdim=True)
    y = torch.sub(x, mean)  # two passes, not E[x^2] - mean^2, which cancels for inputs with an offset
    return mean, sum_squares(y, dims).div_(math.prod(x.shape[d] for d in dims)), y, None


class _Normalize(Function):
    @staticmethod
    def forward(ctx, x, dims, coeffs, floor, center, *params):
        xs = upcast(x)
        count = math.prod(x.shape[d] for d in dims)
        on_rows = trailing(x, dims) and kernels.ready("rows", x)
        if on_rows:  # the C kernels: moments in one read of each row (rows.c)
            shape = x.shape[: x.dim() - len(dims)] + (1,) * len(dims)
            mean, var = (t.view(shape) for t in rows.moments(x, x.numel() // count, center))
            y, unit = None, None
        elif center:
            mean, var, y, unit = _centered(xs, dims)
        else:  # moments about zero (FRN's nu^2): one read of x
            var = sum_squares(xs, dims).div_(count)
            mean, y = torch.zeros_like(var), None
        with torch.enable_grad():  # the small graph from the moments to (a, b), for backward
            m, v = mean.detach().requires_grad_(), var.detach().requires_grad_()
            leaves = [t.detach().requires_grad_(t.requires_grad) if t is not None else None for t in params]
            a, b = coeffs(m, v, *leaves)
        a_, b_ = a.detach(), b.detach() if b is not None else None
        ctx.on_rows = on_rows and all(t is None or fits(t, m) for t in (a_, b_, floor))
        if ctx.on_rows:  # x a + b (and the floor) in one pass, one factor per row
            y = rows.affine(x, *(_per_row(t, m) for t in (a_, b_, floor)))
            floor_rows = _per_row(floor, m)
        elif y is None:
            y = scale_rows(xs, a_, b_)
        else:  # a x + b = (a unit) y + (b + a mean), written over y (addcmul with out=y took 3x as long)
            shift = torch.addcmul(b_, a_, mean) if b_ is not None else a_ * mean
            y.mul_(a_ * unit if unit is not None else a_).add_(shift)
        if floor is not None and not ctx.on_rows:
            y.clamp_min_(floor)
        out = y.to(x.dtype)
        # Backward passes gradient where x a + b > floor. fp32 and fp64: y itself says where. bf16 and
        # fp16: the mask is kept as bools, from y in fp32; the rounded output equals the rounded floor
        # for values just above it, and would drop their gradient.
        above = None if floor is None else out if out is y else y > floor
        ctx.save_for_backward(x, above, floor_rows if ctx.on_rows else floor)
        ctx.graph = (m, v, leaves, a, b)
        ctx.count, ctx.center = count, center
        ctx.floor_shape = floor.shape if floor is not None else None
        return out

    @staticmethod
    @first_order
    def backward(ctx, dy):
        x, above, floor = ctx.saved_tensors  # above: y, or the mask (low precision)
        m, v, leaves, a, b = ctx.graph
        if ctx.on_rows:
            return _rows_backward(ctx, dy.contiguous(), x, above, floor)
        xs, dy = upcast(x), upcast(dy)
        masked, g_floor = None, None
        if floor is not None:
            # Below the floor the output is the floor: no gradient to x, a or b, all of it to the
            # floor. ReLU's backward kernel masks in one pass, into the buffer that becomes dx.
            total = sum_to(dy, floor.shape)
            if above.dtype == torch.bool:
                dy = masked = torch.where(above, dy, 0.0)
            else:
                masked = torch.sub(above, floor.to(above.dtype)).to(xs.dtype)
                dy = torch.ops.aten.threshold_backward.grad_input(dy, masked, 0, grad_input=masked)
        if fits(a, m) and (b is None or fits(b, m)):
            g_xy, g_y = block_sums(dy, xs, m.shape)
            grads = [sum_to(g_xy, a.shape)] + ([sum_to(g_y, b.shape)] if b is not None else [])
            if floor is not None:
                g_floor = total - (sum_to(g_y, floor.shape) if fits(floor, m) else sum_to(dy, floor.shape))
        else:  # factors that vary inside a block of the statistics
            grads = [sum_to(dy * xs, a.shape)] + ([sum_to(dy, b.shape)] if b is not None else [])
            if floor is not None:
                g_floor = total - sum_to(dy, floor.shape)
        p, q, g_params = _through_coeffs(ctx, grads)
        if masked is not None:  # dy is in the buffer that becomes dx
            dx = masked.mul_(a.detach()).addcmul_(xs, p)
            dx = dx.add_(q) if q is not None else dx
        else:
            dx = scale_rows(xs, p, q).addcmul_(dy, a.detach())
        g_floor = g_floor.to(floor.dtype) if g_floor is not None else None
        return (dx.to(x.dtype), None, None, g_floor, None, *g_params)


def _through_coeffs(ctx, grads):
    """The gradients of (a, b) through ``coeffs`` to the moments and the parameters: dx's
    per-block factors p, q (q None when not centered) and the parameters' gradients."""
    m, v, leaves, a, b = ctx.graph
    outputs = [a] + ([b] if b is not None else [])
    learned = [t for t in leaves if t is not None and t.requires_grad]
    # retain_graph: a second backward through the outer graph (backward(retain_graph=True)) comes
    # back to this small graph; it is freed with ctx when the outer graph is.
    found = torch.autograd.grad(
        outputs, [m, v, *learned], [g.to(o.dtype) for g, o in zip(grads, outputs)], allow_unused=True, retain_graph=True
    )
    g_m, g_v = (g if g is not None else torch.zeros_like(t) for g, t in zip(found[:2], (m, v)))
    # dx = dy a + x p + q, the last two the moments' share: d var / dx = 2 (x - mean) / n
    # (about zero when not centered), d mean / dx = 1 / n.
    p = g_v * (2.0 / ctx.count)
    q = g_m / ctx.count - p * m.detach() if ctx.center else None
    by_leaf = iter(found[2:])
    return p, q, [next(by_leaf) if t is not None and t.requires_grad else None for t in leaves]


def _rows_backward(ctx, dy, x, y, floor_rows):
    """``_Normalize``'s backward by the C kernels (rows.c): the sums in one pass, dx in another."""
    m, _, leaves, a, b = ctx.graph
    s_g, s_gx, s_dy = rows.grad_sums(dy, x, y, floor_rows, m.numel())
    grads = [sum_to(s_gx.view(m.shape), a.shape)] + ([sum_to(s_g.view(m.shape), b.shape)] if b is not None else [])
    p, q, g_params = _through_coeffs(ctx, grads)
    dx = rows.dx(dy, x, y, floor_rows, _per_row(a.detach(), m), _per_row(p, m), _per_row(q, m))
    g_floor = None
    if floor_rows is not None:  # what the mask kept from x's gradient went to the floor
        g_floor = sum_to((s_dy - s_g).view(m.shape), ctx.floor_shape)
    return (dx, None, None, g_floor, None, *g_params)


def _per_row(t: torch.Tensor | None, block: torch.Tensor) -> torch.Tensor | None:
    """One contiguous fp32 value per block (row) of ``block``'s shape, for the C kernels."""
    return None if t is None else kernels.vector(t.expand(block.shape))


def normalize(
    x: torch.Tensor,
    dims: tuple[int, ...],
    coeffs,
    *params: torch.Tensor | None,
    floor: torch.Tensor | None = None,
    center: bool = True,
) -> torch.Tensor:
    """``x * a + b`` (``max(., floor)`` with a floor), where ``a, b = coeffs(mean, var, *params)``
    and ``mean``, ``var`` are the moments of ``x`` over ``dims`` (kept as size-1 dims).
    ``center=False``: the moments about zero, mean 0 and var = mean(x^2), one pass fewer.

    ``coeffs`` may read other state (running statistics) and update it under ``no_grad``; it
    runs once per forward. ``b`` may be None. ``params`` are the tensors whose gradients it
    must give (parameters, or None).
    """
    dims = tuple(d % x.dim() for d in dims)
    return _Normalize.apply(x, dims, coeffs, floor, center, *params)
