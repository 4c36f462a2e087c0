"""Perceptual losses for style transfer (Johnson, Alahi & Fei-Fei 2016, Sec. 3.2-3.3).

With phi_j the features of loss-network layer j, of shape (C_j, H_j, W_j):

- content, "feature reconstruction" (Eq. 2):  ||phi_j(y_hat) - phi_j(y_c)||^2 / (C_j H_j W_j)
- Gram matrix (Eq. 3):  G_j(x)_{c,c'} = sum_{h,w} phi_j(x)_{h,w,c} phi_j(x)_{h,w,c'} / (C_j H_j W_j),
  optionally of the mean-subtracted features (``gram: centred``, for random loss networks)
- style (Eq. 4, Gatys et al. 2016):  sum over style layers j of ||G_j(y_hat) - G_j(y_s)||_F^2
- total variation (Sec. 3.3; Mahendran & Vedaldi 2015, beta = 2): mean squared difference of
  neighbouring pixels, vertically plus horizontally.

Each term is averaged over the images of a batch; the total is their weighted sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.errors import ConfigError
from normlab.models.loss_net import LossNetwork


def gram(features: torch.Tensor, centred: bool = False) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C), Eq. 3: channel co-activations, normalised by C H W.

    ``centred`` subtracts each channel's spatial mean first, so the matrix is a covariance
    (as in the whitening-colouring transform of Li et al. 2017). Features of a random-weight
    network have large means that dominate the plain Gram matrix and hide the texture.
    """
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    if centred:
        f = f - f.mean(dim=2, keepdim=True)
    return f @ f.transpose(1, 2) / (c * h * w)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean over images of the mean squared vertical plus horizontal pixel differences."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
    return dy + dx


class PerceptualLoss(nn.Module):
    def __init__(
        self,
        net: LossNetwork,
        content_layer: str,
        style_layers: list[str],
        content_weight: float,
        style_weight: float,
        tv_weight: float,
        gram: str = "plain",
    ):
        super().__init__()
        if gram not in ("plain", "centred"):
            raise ConfigError(f"unknown gram '{gram}'. Fix: set task.loss.gram to plain (Johnson et al.) or centred.")
        self.net, self.content_layer, self.style_layers = net, content_layer, list(style_layers)
        self.centred = gram == "centred"
        self.weights = {"content": content_weight, "style": style_weight, "tv": tv_weight}
        self.style_grams: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def set_style(self, style: torch.Tensor) -> None:
        """Gram targets of one style image ``(1, 3, H, W)`` in [0, 1], computed once."""
        feats = self.net(style)
        self.style_grams = {k: gram(feats[k], self.centred) for k in self.style_layers}  # each (1, C, C)

    def forward(self, stylized: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of a batch of stylized images against their content images (both in [0, 1])."""
        if not self.style_grams:
            raise RuntimeError("PerceptualLoss.set_style must be called before the loss is computed")
        feats = self.net(stylized)
        with torch.no_grad():  # the content targets are constants
            target = self.net(content)[self.content_layer]
        terms = {
            "content": F.mse_loss(feats[self.content_layer], target),
            # Squared Frobenius norm per image, averaged over the batch; summed over layers.
            "style": sum(
                (gram(feats[k], self.centred) - self.style_grams[k].to(feats[k])).pow(2).sum((1, 2)).mean()
                for k in self.style_layers
            ),
            "tv": total_variation(stylized),
        }
        terms["loss"] = sum(self.weights[k] * terms[k] for k in self.weights)
        return terms
