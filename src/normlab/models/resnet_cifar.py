"""The CIFAR ResNets of He, Zhang, Ren & Sun (2016, Sec. 4.2): ResNet-8/20/32/56.

A 3x3 stem of 16 channels, then three stages of n basic blocks at 16, 32 and 64 channels
(depth = 6n + 2), global average pooling and a linear classifier. Shortcuts that change shape
are the paper's option A: subsample and pad channels with zeros, no parameters, so the only
norms in the network are the ones the factory builds.

A norm that carries its own activation (FRN, EvoNorm: ``activates``) takes the place of a
norm and its ReLU, so no ReLU follows it; the last norm of each block, before the sum, is built
in its affine-only form (``linear_norm``), as in the ResNets of the TF TPU reference and timm.
Every other norm gives the network of the paper, unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms.registry import NormLayer, activates, linear_norm, relu_after


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm_layer: NormLayer):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = norm_layer(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = linear_norm(norm_layer, cout)  # the "last norm" that zero_init_residual zeroes
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm1(self.conv1(x))
        out = out if activates(self.norm1) else F.relu(out)
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(
        self,
        depth: int,
        norm_layer: NormLayer,
        num_classes: int = 10,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (16, 32, 64),
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56, ...), got {depth}")
        n = (depth - 2) // 6
        conv, norm = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), norm_layer(widths[0])
        self.stem = nn.Sequential(conv, norm, relu_after(norm))
        blocks, cin = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(n):
                blocks.append(BasicBlock(cin, width, 2 if i > 0 and j == 0 else 1, norm_layer))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            zero_init_last_norms(b.norm2 for b in self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # (N, 64, H/4, W/4)
        return self.fc(x.mean(dim=(2, 3)))


def zero_init_last_norms(norms) -> None:
    """Start every residual block as the identity (Goyal et al. 2017, Sec. 5.1): gamma = 0."""
    for norm in norms:
        if getattr(norm, "weight", None) is not None:
            nn.init.zeros_(norm.weight)


def resnet_cifar(depth: int, **kwargs) -> ResNetCifar:
    return ResNetCifar(depth, **kwargs)
