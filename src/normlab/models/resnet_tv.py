"""torchvision's ImageNet ResNets (resnet18, resnet50) with the factory's norm.

torchvision builds every norm through ``norm_layer(C)``, the factory's calling convention, so
the network is torchvision's own. ``stem="cifar"`` swaps the 7x7/2 conv and max-pool for one
3x3/1 conv, the usual change for 32x32 images; ``stem="imagenet"`` keeps the original.

The blocks are torchvision's with one change for norms that carry their own activation (FRN,
EvoNorm: ``activates``): no ReLU after such a norm, and the norms before the sum (the branch's
last one and the projection shortcut's) in their affine-only form (``linear_norm``), as in the
ResNets of the TF TPU reference (``norm_activation(..., nonlinearity=False)``) and timm
(``apply_act=False``). For every other norm the network is torchvision's, parameter for parameter.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet as tv

from normlab.models.resnet_cifar import zero_init_last_norms
from normlab.norms.registry import NormLayer, activates, linear_norm


def _relu(norm: nn.Module, relu: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x if activates(norm) else relu(x)


def _affine_before_sum(block: nn.Module, last: str, norm_layer: NormLayer, channels: int) -> None:
    """The branch's last norm and the shortcut's in their affine-only form, if they activate."""
    if activates(getattr(block, last)):
        setattr(block, last, linear_norm(norm_layer, channels))
    if block.downsample is not None and activates(block.downsample[1]):
        block.downsample[1] = linear_norm(norm_layer, channels)


class BasicBlock(tv.BasicBlock):
    def __init__(
        self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1, norm_layer=None
    ):
        super().__init__(inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer)
        _affine_before_sum(self, "bn2", norm_layer, planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _relu(self.bn1, self.relu, self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(tv.Bottleneck):
    def __init__(
        self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1, norm_layer=None
    ):
        super().__init__(inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer)
        _affine_before_sum(self, "bn3", norm_layer, planes * self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _relu(self.bn1, self.relu, self.bn1(self.conv1(x)))
        out = _relu(self.bn2, self.relu, self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


# What torchvision's resnet18(), ... build: ResNet(block, blocks per stage), here with the blocks above.
ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}


def resnet_tv(
    arch: str,
    norm_layer: NormLayer,
    num_classes: int = 1000,
    in_channels: int = 3,
    stem: str = "cifar",
    zero_init_residual: bool = False,
) -> nn.Module:
    # torchvision's own zero_init_residual assumes every norm has a weight; ours need not.
    block, layers = ARCHS[arch]
    model = tv.ResNet(block, layers, num_classes=num_classes, norm_layer=norm_layer)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    if activates(model.bn1):  # the stem's norm is its own activation
        model.relu = nn.Identity()
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if zero_init_residual:
        blocks = [m for m in model.modules() if isinstance(m, (tv.BasicBlock, tv.Bottleneck))]
        zero_init_last_norms(getattr(b, "bn3", b.bn2) for b in blocks)
    return model
