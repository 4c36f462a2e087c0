"""Adaptive Instance Normalization (Huang & Belongie, 2017, "Arbitrary Style Transfer in
Real-time with Adaptive Instance Normalization", Eq. 8).

    AdaIN(x, s) = sigma(s) * (x - mu(x)) / sigma(x) + mu(s)

mu and sigma are InstanceNorm's statistics of each sample and channel, over (H, W) (over L
for ``nlc``), with sigma = sqrt(var + eps), var biased (the paper's Eq. 5-6). The style's
statistics replace gamma and beta, so AdaIN takes two inputs and is not a factory norm (the
factory's layers take one); ``cond_instance`` is the factory's one-input relative, with
learned (gamma, beta) per style. ``content`` and ``style`` must have the same N and C; their
spatial sizes may differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normlab.norms.layout import check_layout, instance_dims


def adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5, layout: str = "nchw") -> torch.Tensor:
    check_layout(layout)
    var_s, mu_s = torch.var_mean(style, instance_dims(style, layout), correction=0, keepdim=True)
    if layout == "nlc":  # (N, L, C): InstanceNorm's kernel wants the reduced axis last
        normalized = F.instance_norm(content.transpose(1, 2), eps=eps).transpose(1, 2)
    else:
        normalized = F.instance_norm(content, eps=eps)
    return torch.addcmul(mu_s, normalized, torch.sqrt(var_s + eps))
