"""Group Normalization (Wu & He, 2018, Eq. 1, 2, 6 and 7).

    y = gamma * (x - mu_ng) / sqrt(var_ng + eps) + beta,  one mean/var per sample and group

Channels are split into G groups of C/G consecutive channels.

- ``nchw``: reduce over (C/G, H, W) of each sample and group;
- ``nlc``:  reduce over the C/G channels of each group, per token.

G = 1 is LayerNorm over (C, H, W); G = C is InstanceNorm (Sec. 3.1 of the paper); both
identities are tested. ``group_size`` (channels per group, the bottom half of the paper's
Table 3), when set, wins over ``num_groups``. ``GroupNorm1`` is GroupNorm with one group, by
name (timm's ``GroupNorm1``): ``layer`` for images, not the per-pixel ``layer2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.errors import ConfigError
from normlab.norms.layout import check_input, check_layout, check_statistics, spatial_size
from normlab.norms.precision import layer_norm, upcast


def resolve_groups(num_channels: int, num_groups: int | None, group_size: int | None) -> int:
    if num_groups is None and group_size is None:
        raise ConfigError("GroupNorm needs num_groups or group_size. Fix: set norm.num_groups=<G>.")
    groups = num_groups if group_size is None else num_channels // max(group_size, 1)
    if groups < 1 or num_channels % groups or (group_size and groups * group_size != num_channels):
        valid = [g for g in range(1, num_channels + 1) if num_channels % g == 0]
        asked = f"num_groups={num_groups}" if group_size is None else f"group_size={group_size}"
        raise ConfigError(
            f"GroupNorm with {asked} does not divide a layer of {num_channels} channels. "
            f"Fix: pick num_groups from {valid}."
        )
    return groups


class GroupNorm(nn.GroupNorm):
    axes = {"nchw": "(C/G, H, W) per sample and group", "nlc": "C/G per token and group"}
    batch_dependent = False

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        num_groups: int | None = 8,
        group_size: int | None = None,
        eps: float = 1e-5,
        affine: bool = True,
    ):
        super().__init__(resolve_groups(num_channels, num_groups, group_size), num_channels, eps, affine)
        self.layout = check_layout(layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_channels, "GroupNorm")
        per_group = self.num_channels // self.num_groups * (spatial_size(x, "nchw") if self.layout == "nchw" else 1)
        check_statistics(x, per_group, "GroupNorm", self.axes[self.layout])
        if self.layout == "nlc":
            # Tokens: LayerNorm's kernel over each group's C/G channels (a view), not GroupNorm's
            # on the (N*L, C) rows, whose backward is slow for rows this short: forward + backward
            # of 32x128x256 tokens took 15 ms with it, 2.3 ms with LayerNorm for one group and
            # 7.9 ms for eight plus the per-channel affine (measured 2026-11-23, one CPU thread).
            if self.num_groups == 1:
                return layer_norm(x, self.num_channels, self.weight, self.bias, self.eps)
            # bf16/fp16: an fp32 copy, and the affine in fp32, so the output is rounded once.
            size = self.num_channels // self.num_groups
            y = F.layer_norm(upcast(x).reshape(*x.shape[:-1], self.num_groups, size), (size,), None, None, self.eps)
            y = y.view(x.shape)
            if self.weight is not None:
                y = torch.addcmul(upcast(self.bias), y, upcast(self.weight))
            return y.to(x.dtype)
        return super().forward(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", layout={self.layout}"


class GroupNorm1(GroupNorm):
    """GroupNorm with one group: (C, H, W) per sample, or C per token. ``num_groups`` is not a knob."""

    axes = {"nchw": "(C, H, W) per sample", "nlc": "C per token"}

    def __init__(self, num_channels: int, layout: str = "nchw", eps: float = 1e-5, affine: bool = True):
        super().__init__(num_channels, layout, num_groups=1, eps=eps, affine=affine)
