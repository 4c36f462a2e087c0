"""Instance Normalization (Ulyanov, Vedaldi & Lempitsky, 2016, Eq. 2).

    y = gamma * (x - mu_nc) / sqrt(var_nc + eps) + beta,  one mean/var per sample and channel

- ``nchw``: reduce over (H, W) of each sample and channel;
- ``nlc``:  reduce over the L tokens of each sequence and channel. In a causal model this
  lets a token see statistics of later tokens; the LM task warns about it.

With ``track_running_stats`` the layer also keeps BatchNorm-style running estimates and uses
them in eval mode (off by default, as in the paper and in PyTorch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.layer import AffineNorm
from normlab.norms.layout import check_statistics, spatial_size


class InstanceNorm(AffineNorm):
    axes = {"nchw": "(H, W) per sample and channel", "nlc": "L per sample and channel"}
    batch_dependent = False
    mixes_tokens = True  # over L, per sequence: in eval too unless track_running_stats (see models/gpt.py)

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = False,
    ):
        super().__init__(num_channels, layout, eps, affine)
        self.momentum, self.track_running_stats = momentum, track_running_stats
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_channels))
            self.register_buffer("running_var", torch.ones(num_channels))
        else:
            self.running_mean = self.running_var = None

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            check_statistics(x, spatial_size(x, self.layout), "InstanceNorm", self.axes[self.layout])
        if self.layout == "nlc":
            x = x.transpose(1, 2)  # (N, C, L): the kernel reduces over trailing dims
        y = F.instance_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_batch_stats,
            self.momentum,
            self.eps,
        )
        return y.transpose(1, 2) if self.layout == "nlc" else y
