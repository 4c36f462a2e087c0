"""torchvision's ImageNet ResNets (resnet18, resnet50) with the factory's norm.

torchvision builds every norm through ``norm_layer(C)``, the factory's calling convention, so
the network is torchvision's own. ``stem="cifar"`` swaps the 7x7/2 conv and max-pool for one
3x3/1 conv, the usual change for 32x32 images; ``stem="imagenet"`` keeps the original.
"""

from __future__ import annotations

import torchvision
from torch import nn

from normlab.models.resnet_cifar import zero_init_last_norms
from normlab.norms.registry import NormLayer


def resnet_tv(
    arch: str,
    norm_layer: NormLayer,
    num_classes: int = 1000,
    in_channels: int = 3,
    stem: str = "cifar",
    zero_init_residual: bool = False,
) -> nn.Module:
    # torchvision's own zero_init_residual assumes every norm has a weight; ours need not.
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes, norm_layer=norm_layer)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if zero_init_residual:
        blocks = [m for m in model.modules() if isinstance(m, (torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck))]
        zero_init_last_norms(getattr(b, "bn3", b.bn2) for b in blocks)
    return model
