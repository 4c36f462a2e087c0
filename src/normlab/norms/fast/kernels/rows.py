"""Python side of ``rows.c``: tensors in, tensors out. x is (R rows, L) as any contiguous shape
whose trailing dims are the rows; per-row factors are R contiguous floats."""

from __future__ import annotations

import ctypes

import torch

from normlab.norms.fast.kernels import build
from normlab.norms.fast.kernels.build import ptr, threads

_long = ctypes.c_int64


def _lib():
    return build.load("rows")


def moments(x: torch.Tensor, rows: int, center: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    mean, var = x.new_empty(rows), x.new_empty(rows)
    _lib().rows_moments(
        ptr(x), ptr(mean), ptr(var), _long(rows), _long(x.numel() // rows), ctypes.c_int(center), threads()
    )
    return mean, var


def affine(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None, floor: torch.Tensor | None) -> torch.Tensor:
    y = torch.empty_like(x)
    rows = a.numel()
    _lib().rows_affine(ptr(x), ptr(y), ptr(a), ptr(b), ptr(floor), _long(rows), _long(x.numel() // rows), threads())
    return y


def grad_sums(dy, x, y, floor, rows: int):
    """sum(g), sum(g x) per row, and sum(dy) when there is a floor (else None)."""
    s_g, s_gx = x.new_empty(rows), x.new_empty(rows)
    s_dy = x.new_empty(rows) if floor is not None else None
    _lib().rows_grad_sums(
        ptr(dy),
        ptr(x),
        ptr(y),
        ptr(floor),
        ptr(s_g),
        ptr(s_gx),
        ptr(s_dy),
        _long(rows),
        _long(x.numel() // rows),
        threads(),
    )
    return s_g, s_gx, s_dy


def dx(dy, x, y, floor, a, p, q) -> torch.Tensor:
    out = torch.empty_like(x)
    rows = a.numel()
    _lib().rows_dx(
        ptr(dy),
        ptr(x),
        ptr(y),
        ptr(floor),
        ptr(a),
        ptr(p),
        ptr(q),
        ptr(out),
        _long(rows),
        _long(x.numel() // rows),
        threads(),
    )
    return out
