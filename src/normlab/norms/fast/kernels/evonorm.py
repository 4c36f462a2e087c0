"""Python side of ``evonorm.c``: (N, C, ...) images, contiguous fp32; gamma and beta may be None."""

from __future__ import annotations

import ctypes

import torch

from normlab.norms.fast.kernels import build
from normlab.norms.fast.kernels.build import image_dims, ptr, threads

_long = ctypes.c_int64


def _lib():
    return build.load("evonorm")


def s0_forward(x, v, gamma, beta, groups: int, eps: float):
    """y, the sigmoid s = sigmoid(v x) (for backward), and the groups' mean and 1/std, (N, G)."""
    n, c, s = image_dims(x)
    y, sig, mean, rstd = torch.empty_like(x), torch.empty_like(x), x.new_empty(n, groups), x.new_empty(n, groups)
    _lib().evonorm_s0_forward(
        ptr(x),
        ptr(y),
        ptr(sig),
        ptr(mean),
        ptr(rstd),
        ptr(v),
        ptr(gamma),
        ptr(beta),
        _long(n),
        _long(c),
        _long(s),
        _long(groups),
        ctypes.c_float(eps),
        threads(),
    )
    return y, sig, mean, rstd


def s0_backward(dy, x, sig, mean, rstd, v, gamma, out=None):
    """dx, and per (sample, channel) sum(dy f), sum(dy) and sum(dy x^2 s (1 - s)), f = x s.

    dx goes to ``out``, which may be ``sig`` itself: each element of dx needs only the same
    element of the sigmoid, read before it is written."""
    n, c, s = image_dims(x)
    dx = torch.empty_like(x) if out is None else out
    sums = [x.new_empty(n, c) for _ in range(3)]
    _lib().evonorm_s0_backward(
        ptr(dy),
        ptr(x),
        ptr(sig),
        ptr(mean),
        ptr(rstd),
        ptr(v),
        ptr(gamma),
        ptr(dx),
        *map(ptr, sums),
        _long(n),
        _long(c),
        _long(s),
        _long(mean.shape[1]),
        threads(),
    )
    return dx, *sums


def b0_forward(x, v, s_i, s_b, gamma, beta):
    """y = x / max(s_b, v x + s_i) gamma + beta; s_i per (sample, channel), the rest per channel."""
    n, c, s = image_dims(x)
    y = torch.empty_like(x)
    _lib().evonorm_b0_forward(
        ptr(x), ptr(y), ptr(v), ptr(s_i), ptr(s_b), ptr(gamma), ptr(beta), _long(n * c), _long(c), _long(s), threads()
    )
    return y


def b0_backward_sums(dy, x, v, s_i, s_b, gamma):
    """Per (sample, channel): sum(dy u), sum(dy), sum(Bm), sum(Bm x), sum(B) (see evonorm.c)."""
    n, c, s = image_dims(x)
    sums = [x.new_empty(n, c) for _ in range(5)]
    _lib().evonorm_b0_backward_sums(
        ptr(dy),
        ptr(x),
        ptr(v),
        ptr(s_i),
        ptr(s_b),
        ptr(gamma),
        *map(ptr, sums),
        _long(n * c),
        _long(c),
        _long(s),
        threads(),
    )
    return sums


def b0_dx(dy, x, v, s_i, s_b, gamma, p, q):
    n, c, s = image_dims(x)
    dx = torch.empty_like(x)
    _lib().evonorm_b0_dx(
        ptr(dy),
        ptr(x),
        ptr(v),
        ptr(s_i),
        ptr(s_b),
        ptr(gamma),
        ptr(p),
        ptr(q),
        ptr(dx),
        _long(n * c),
        _long(c),
        _long(s),
        threads(),
    )
    return dx
