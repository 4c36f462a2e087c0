"""Batch Normalization (Ioffe & Szegedy, 2015, Algorithm 1).

    y = gamma * (x - mu_B) / sqrt(var_B + eps) + beta

Statistics are taken per channel over the batch:

- ``nchw``: reduce over (N, H, W), one mean/var per channel;
- ``nlc``:  reduce over (N, L), one mean/var per channel.

In training mode the batch statistics normalize, and the running estimates are updated with
``running = (1 - momentum) * running + momentum * batch``, where the variance fed to the
running estimate is the *unbiased* one (divided by n - 1) while normalization uses the biased
one (divided by n), as in Algorithm 2 of the paper. Eval mode uses the running estimates.
"""

from __future__ import annotations

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.norms.layout import check_input, check_layout


class BatchNorm(_BatchNorm):
    """PyTorch's native batch-norm kernel, for both layouts.

    Subclassing ``_BatchNorm`` keeps the native running-statistics logic and lets tools that
    look for BatchNorm layers (SyncBatchNorm conversion, PreciseBN) find this one.
    """

    axes = {"nchw": "(N, H, W) per channel", "nlc": "(N, L) per channel"}
    batch_dependent = True

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__(num_channels, eps, momentum, affine, track_running_stats)
        self.layout = check_layout(layout)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        pass  # checked in forward, where the layout is known

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.layout, self.num_features, "BatchNorm")
        if self.layout == "nlc":
            # (N, L, C) -> (N*L, C) is a view: the kernel reduces over rows, no permute needed.
            return super().forward(x.reshape(-1, x.shape[-1])).view_as(x)
        return super().forward(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", layout={self.layout}"
