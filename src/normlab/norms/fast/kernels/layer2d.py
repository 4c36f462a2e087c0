"""Python side of ``layer2d.c``: (N, C, ...) images, contiguous fp32; gamma and beta may be None."""

from __future__ import annotations

import ctypes

import torch

from normlab.norms.fast.kernels import build
from normlab.norms.fast.kernels.build import image_dims, ptr, threads

_long = ctypes.c_int64


def _lib():
    return build.load("layer2d")


def forward(x, gamma, beta, eps: float):
    """y, and the mean and 1/std over C at each position, (N, S)."""
    n, c, s = image_dims(x)
    y, mean, rstd = torch.empty_like(x), x.new_empty(n, s), x.new_empty(n, s)
    _lib().layer2d_forward(
        ptr(x),
        ptr(y),
        ptr(mean),
        ptr(rstd),
        ptr(gamma),
        ptr(beta),
        _long(n),
        _long(c),
        _long(s),
        ctypes.c_float(eps),
        threads(),
    )
    return y, mean, rstd


def backward(dy, x, mean, rstd, gamma):
    """dx, and sum(dy xhat), sum(dy) per (sample, channel)."""
    n, c, s = image_dims(x)
    dx, s_dyxhat, s_dy, work = torch.empty_like(x), x.new_empty(n, c), x.new_empty(n, c), x.new_empty(n, 2, s)
    _lib().layer2d_backward(
        ptr(dy),
        ptr(x),
        ptr(mean),
        ptr(rstd),
        ptr(gamma),
        ptr(dx),
        ptr(s_dyxhat),
        ptr(s_dy),
        ptr(work),
        _long(n),
        _long(c),
        _long(s),
        threads(),
    )
    return dx, s_dyxhat, s_dy
