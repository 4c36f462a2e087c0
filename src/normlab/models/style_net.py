"""The transformation network of Johnson, Alahi & Fei-Fei (2016, Sec. 3.1 and supplementary
Table 1) for fast feed-forward style transfer.

    9x9 conv, 32 -> 3x3 conv /2, 64 -> 3x3 conv /2, 128 -> 5 residual blocks at 128
    -> x2 up + 3x3 conv, 64 -> x2 up + 3x3 conv, 32 -> 9x9 conv, 3 -> scaled tanh

Every conv but the last is followed by a norm from the factory and a ReLU (none after a norm
that ``activates`` itself, FRN or EvoNorm; the last norm of a residual block, before the sum,
in its affine-only form, as in the ResNets of the TF TPU reference and timm). Johnson et al. used
BatchNorm; Ulyanov, Vedaldi & Lempitsky (2016) replaced it with InstanceNorm, the comparison
this model exists for. Two deviations from Johnson et al., both now standard:

- every conv pads its input by reflection, instead of one 40-pixel reflection pad of the input
  and unpadded convs in the residual blocks, so the output has the size of the input;
- upsampling is nearest-neighbour plus a conv, not a transposed conv, which avoids
  checkerboard artefacts (Odena, Dumoulin & Olah 2016).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.errors import ConfigError
from normlab.norms.registry import NormLayer, linear_norm, relu_after

MIN_SIZE = 5  # the 9x9 convs reflect 4 pixels, which needs at least 5 per side


class ConvLayer(nn.Sequential):
    """Reflection pad, conv. Biases stay on: with ``norm=none`` they are the only offsets."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class ConvNormReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, norm_layer: NormLayer):
        conv, norm = ConvLayer(cin, cout, kernel, stride), norm_layer(cout)
        super().__init__(conv, norm, relu_after(norm))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with norms; no ReLU after the sum (Gross & Wilber 2016, as in Johnson et al.)."""

    def __init__(self, channels: int, norm_layer: NormLayer):
        super().__init__()
        self.body = nn.Sequential(
            ConvNormReLU(channels, channels, 3, 1, norm_layer),
            ConvLayer(channels, channels, 3),
            linear_norm(norm_layer, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to a given size, then conv-norm-ReLU.

    The size is that of the matching downsampling stage, not simply twice the input: a stride-2
    conv maps an odd side 2k+1 to k+1, and doubling would give 2k+2.
    """

    def __init__(self, cin: int, cout: int, norm_layer: NormLayer):
        super().__init__()
        self.conv = ConvNormReLU(cin, cout, 3, 1, norm_layer)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class StyleNet(nn.Module):
    """Image in [0, 1], ``(N, 3, H, W)`` -> stylized image in [0, 1], same shape."""

    def __init__(self, norm_layer: NormLayer, width: float = 1.0, num_res_blocks: int = 5):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        self.conv1 = ConvNormReLU(3, c1, 9, 1, norm_layer)
        self.down1 = ConvNormReLU(c1, c2, 3, 2, norm_layer)
        self.down2 = ConvNormReLU(c2, c3, 3, 2, norm_layer)
        self.res = nn.Sequential(*(ResidualBlock(c3, norm_layer) for _ in range(num_res_blocks)))
        self.up1 = Upsample(c3, c2, norm_layer)
        self.up2 = Upsample(c2, c1, norm_layer)
        self.out = ConvLayer(c1, 3, 9)  # no norm, no ReLU: the output layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ConfigError(
                f"StyleNet needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {tuple(x.shape[-2:])}. "
                f"Fix: use larger images (data.crop, data.eval_size)."
            )
        h1 = self.conv1(x * 2 - 1)  # (N, c1, H, W); centred, since no norm precedes this conv
        h2 = self.down1(h1)  # (N, c2, ceil(H/2), ceil(W/2))
        h = self.res(self.down2(h2))  # (N, c3, ceil(H/4), ceil(W/4))
        h = self.up1(h, h2.shape[-2:])  # (N, c2, ceil(H/2), ceil(W/2))
        h = self.up2(h, h1.shape[-2:])  # (N, c1, H, W)
        # Johnson et al.'s "scaled tanh", here onto [0, 1] rather than [0, 255].
        return (torch.tanh(self.out(h)) + 1) / 2


def style_net(norm_layer: NormLayer, width: float = 1.0, num_res_blocks: int = 5) -> StyleNet:
    return StyleNet(norm_layer, width, num_res_blocks)
