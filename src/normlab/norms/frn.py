"""Filter Response Normalization with a Thresholded Linear Unit (Singh & Krishnan, 2019,
"Filter Response Normalization Layer: Eliminating Batch Dependence in the Training of Deep
Neural Networks", Eq. 1-4).

    nu^2  = mean(x^2)                          per sample and channel, no centering   (Eq. 1)
    x_hat = x / sqrt(nu^2 + eps)                                                      (Eq. 2)
    y     = gamma * x_hat + beta                                                      (Eq. 3)
    z     = max(y, tau)                        the TLU, tau learned per channel       (Eq. 4)

- ``nchw``: nu^2 over (H, W) of each sample and channel;
- ``nlc``:  over the L tokens of each sequence and channel (like InstanceNorm, so a token
  sees later tokens, in training and in eval).

``learnable_eps``: eps becomes ``eps + |eps_l|`` with eps_l learned per channel (initialised to
1e-4), the paper's remedy for maps with few positions (1x1 in the limit), where a fixed small
eps turns x / sqrt(nu^2 + eps) into sign(x).

``apply_act=False`` drops the TLU: y = gamma * x / sqrt(nu^2 + eps) + beta, with no tau.

FRN brings its own activation: the paper replaces every BN + ReLU pair with FRN + TLU. So the
layer says it ``activates``, and the models put no ReLU after it. Where the original model has
no activation after a norm (the last norm of a residual branch and a projection shortcut's,
before the sum), the models build it with ``apply_act=False``, as ResNets with
normalization-activation layers do (the TF TPU reference's ``norm_activation(...,
nonlinearity=False)``, timm's ``apply_act=False`` in its residual blocks). A Transformer's norms
precede no ReLU either, but keep their TLU: there is no reference model to follow there.

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on every path: nu^2, gamma x_hat
+ beta and the TLU's mask (where it exceeds tau) in fp32, before the output is rounded to x's
dtype; a mask read from the rounded output would drop the gradient of values just above tau,
which round to tau's own value. x's gradients are summed in fp32 and rounded once.

Fast path (``fast/frn.py``): for large inputs, nu^2, gamma x_hat + beta and the TLU in one pass
forward and one back.

Deviation: The paper defines FRN for images; the token axes (``nlc``) are normlab's reading of it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from normlab.norms.layer import AffineNorm
from normlab.norms.layout import instance_dims, per_channel
from normlab.norms.precision import upcast


class FilterResponseNorm(AffineNorm):
    axes = {"nchw": "(H, W) per sample and channel, uncentered", "nlc": "L per sample and channel, uncentered"}
    batch_dependent = False
    activates = True  # the class's default form; apply_act=False sets it per layer
    instance_stats = True  # per-sequence statistics over L in every mode (see models/gpt.py)

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        eps: float = 1e-6,
        learnable_eps: bool = False,
        affine: bool = True,
        apply_act: bool = True,
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.activates = apply_act
        self.tau = nn.Parameter(torch.zeros(num_channels)) if apply_act else None  # the TLU's threshold
        self.eps_l = nn.Parameter(torch.full((num_channels,), 1e-4)) if learnable_eps else None

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        dims = instance_dims(x, self.layout)
        # bf16/fp16 x as one fp32 copy: y and the TLU's mask in fp32, and x's two gradients (through
        # nu^2 and through y) added in fp32 and rounded once, not each rounded to x's dtype. fp32 x: x.
        xs = upcast(x)
        # ||x||^2 / n in one reduction, without materialising x^2; then the same coefficients.
        nu2 = torch.linalg.vector_norm(xs, dim=dims, keepdim=True).square() / math.prod(x.shape[d] for d in dims)
        scale, shift = self.factors(nu2, self.weight, self.bias, self.eps_l)
        y = xs * scale if shift is None else torch.addcmul(shift, xs, scale)
        if self.tau is None:
            return y.to(x.dtype)
        return torch.maximum(y, per_channel(self.tau, x, self.layout)).to(x.dtype)

    def factors(self, nu2, weight, bias, eps_l):
        """gamma / sqrt(nu^2 + eps) and beta, per sample and channel: (N, C, 1, 1) or (N, 1, C)."""
        eps = self.eps if eps_l is None else self.eps + per_channel(eps_l.abs(), nu2, self.layout)
        scale = torch.rsqrt(nu2 + eps)
        if weight is not None:
            scale = scale * per_channel(weight, nu2, self.layout)
        return scale, per_channel(bias, nu2, self.layout)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", learnable_eps={self.eps_l is not None}, apply_act={self.activates}"
