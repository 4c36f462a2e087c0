"""The CIFAR ResNets of He, Zhang, Ren & Sun (2016, Sec. 4.2): ResNet-8/20/32/56, and ResNet-10.

A 3x3 stem of 16 channels, then three stages of n basic blocks at 16, 32 and 64 channels
(depth = 6n + 2), global average pooling and a linear classifier. Shortcuts that change shape
are the paper's option A: subsample and pad channels with zeros, no parameters, so the only
norms in the network are the ones the factory builds.

ResNet-10 is the CPU budget's model: four stages of one block at 16, 32, 64 and 128 channels
(depth = 2 x 4 + 2) with projection shortcuts (option B: a strided 1x1 convolution and a norm,
as in the ImageNet ResNets), which train better than option A in a short schedule.

A norm that carries its own activation (FRN, EvoNorm: ``activates``) takes the place of a
norm and its ReLU, so no ReLU follows it; the last norm of each block, before the sum, is built
in its affine-only form (``linear_norm``), as in the ResNets of the TF TPU reference and timm.
Every other norm gives the network of the paper, unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.errors import ConfigError
from normlab.norms.contract import declared
from normlab.norms.registry import NormLayer, activates, linear_norm, relu_after


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm_layer: NormLayer, projection: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = norm_layer(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = linear_norm(norm_layer, cout)  # the "last norm" that zero_init_residual zeroes
        self.stride, self.pad = stride, cout - cin
        self.projection = None
        if projection and (stride > 1 or cin != cout):  # option B; its norm is before a sum: affine-only
            self.projection = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), linear_norm(norm_layer, cout))

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            return self.projection(x)
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
        widths: tuple[int, ...] = (16, 32, 64),
        zero_init_residual: bool = False,
        shortcut: str = "A",
    ):
        super().__init__()
        stages = len(widths)
        if (depth - 2) % (2 * stages):
            raise ConfigError(
                f"a CIFAR ResNet of {stages} stages has depth {2 * stages}n+2, got {depth}. "
                f"Fix: choose such a depth, or other widths."
            )
        if shortcut not in ("A", "projection"):
            raise ConfigError(
                f"shortcut '{shortcut}' is not one of A (zero-padding), projection. Fix: model.shortcut=A"
            )
        n = (depth - 2) // (2 * stages)
        conv, norm = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), norm_layer(widths[0])
        self.stem = nn.Sequential(conv, norm, relu_after(norm))
        blocks, cin = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(cin, width, stride, norm_layer, projection=shortcut == "projection"))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            zero_init_last_norms(b.norm2 for b in self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # (N, widths[-1], H / 2^(stages-1), W / 2^(stages-1))
        return self.fc(x.mean(dim=(2, 3)))


def zero_init_last_norms(norms) -> None:
    """Start every residual block as the identity (Goyal et al. 2017, Sec. 5.1): gamma = 0."""
    for norm in norms:
        if declared(norm, "weight") is not None:
            nn.init.zeros_(norm.weight)


def resnet_cifar(depth: int, **kwargs) -> ResNetCifar:
    return ResNetCifar(depth, **kwargs)
