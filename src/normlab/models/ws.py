"""Weight Standardization (Qiao, Wang, Liu, Shen & Yuille, 2019, Eq. 5).

    W_hat[o] = (W[o] - mean(W[o])) / sqrt(var(W[o]) + eps),  over (C_in, kH, kW) of each output

Paired with GroupNorm it removes the small-batch gap of BatchNorm in short schedules (their
Table 2), which is why the ``gn_vs_bn`` experiment runs GN both with and without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WSConv2d(nn.Conv2d):
    eps = 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mu = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (self.weight - mu) * torch.rsqrt(var + self.eps)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def standardize_convs(model: nn.Module) -> nn.Module:
    """Swap every ``nn.Conv2d`` for a ``WSConv2d`` with the same weights, in place."""
    for name, child in model.named_children():
        if type(child) is nn.Conv2d:
            ws = WSConv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                child.stride,
                child.padding,
                child.dilation,
                child.groups,
                child.bias is not None,
                child.padding_mode,
            )
            ws.load_state_dict(child.state_dict())
            setattr(model, name, ws)
        else:
            standardize_convs(child)
    return model
