"""Group Normalization (Wu & He, 2018, Eq. 1 and 7).

    y = gamma * (x - mu_ng) / sqrt(var_ng + eps) + beta,  one mean/var per sample and group

Channels are split into G groups of C/G consecutive channels.

- ``nchw``: reduce over (C/G, H, W) of each sample and group;
- ``nlc``:  reduce over the C/G channels of each group, per token.

G = 1 is LayerNorm over (C, H, W); G = C is InstanceNorm (Sec. 3.1 of the paper); both
identities are tested. ``group_size`` (channels per group, the right half of the paper's
Table 3), when set, wins over ``num_groups``. ``GroupNorm1`` is GroupNorm with one group, by
name (timm's ``GroupNorm1``): ``layer`` for images, not the per-pixel ``layer2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.errors import ConfigError
from normlab.norms.layout import check_input, check_layout, check_statistics, spatial_size


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
            # (N, L, C) -> (N*L, C) is a view; each row is one token's channels.
            y = F.group_norm(x.reshape(-1, x.shape[-1]), self.num_groups, self.weight, self.bias, self.eps)
            return y.view_as(x)
        return super().forward(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", layout={self.layout}"


class GroupNorm1(GroupNorm):
    """GroupNorm with one group: (C, H, W) per sample, or C per token. ``num_groups`` is not a knob."""

    axes = {"nchw": "(C, H, W) per sample", "nlc": "C per token"}

    def __init__(self, num_channels: int, layout: str = "nchw", eps: float = 1e-5, affine: bool = True):
        super().__init__(num_channels, layout, num_groups=1, eps=eps, affine=affine)
