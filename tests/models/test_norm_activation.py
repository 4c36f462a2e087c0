"""Norms that carry their own activation in the ResNets: no ReLU after them, and the norms before a
residual sum in their affine-only form (the TF TPU reference's ResNets, timm's apply_act=False).
Every other norm: the network as before."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

from normlab.models import build_model
from normlab.models.style_net import style_net
from normlab.norms import NORMS, activates, norm_layer

RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class _ReluInputs(TorchFunctionMode):
    """Records the tensors every ReLU call is given, whoever calls it (F.relu, nn.ReLU, in place)."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in RELUS:
            self.inputs.append(args[0])
        return func(*args, **(kwargs or {}))


def norms_fed_to_relu(net: nn.Module, x: torch.Tensor) -> tuple[list[nn.Module], list[nn.Module]]:
    """(every norm of ``net`` in forward order, the norms whose output goes straight into a ReLU)."""
    outputs = []
    norms = [m for m in net.modules() if isinstance(m, tuple(NORMS.values()))]
    hooks = [m.register_forward_hook(lambda m, args, out: outputs.append((m, out))) for m in norms]
    with torch.no_grad(), _ReluInputs() as relus:
        net(x)
    for h in hooks:
        h.remove()
    fed = [m for m, out in outputs if any(t is out for t in relus.inputs)]
    return [m for m, _ in outputs], fed


def before_sum(net: nn.Module) -> list[nn.Module]:
    """The norms right before each residual sum: each block's last norm and its shortcut's."""
    last = []
    for b in net.modules():
        if type(b).__name__ in ("BasicBlock", "Bottleneck"):
            last.append(b.norm2 if hasattr(b, "norm2") else getattr(b, "bn3", getattr(b, "bn2", None)))
            if getattr(b, "downsample", None) is not None:
                last.append(b.downsample[1])
    return last


def build(model, norm):
    torch.manual_seed(0)
    return build_model({"name": model}, {"name": norm}, num_classes=10, in_channels=3)


@pytest.mark.parametrize("norm", ["frn", "evonorm_s0", "evonorm_b0"])
@pytest.mark.parametrize("model", ["resnet20", "resnet18", "resnet50"])
def test_no_relu_after_a_norm_that_activates_and_affine_only_before_the_sum(model, norm):
    net = build(model, norm).train()
    ran, fed = norms_fed_to_relu(net, torch.randn(2, 3, 16, 16))
    last = before_sum(net)
    assert last and all(
        not activates(m) and getattr(m, "v1", None) is None and getattr(m, "tau", None) is None for m in last
    )
    rest = [m for m in ran if not any(m is n for n in last)]
    assert rest and all(activates(m) for m in rest)
    assert not fed, "a ReLU follows a norm that is its own activation"
    # The same places with batch norm: the detector does see the ReLUs that follow those norms.
    ran_bn, fed_bn = norms_fed_to_relu(build(model, "batch").train(), torch.randn(2, 3, 16, 16))
    assert len(fed_bn) == len(rest) and len(ran_bn) == len(ran)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_with_batch_norm_the_torchvision_resnet_is_torchvisions_own(arch):
    ours = build(arch, "batch")
    torch.manual_seed(0)  # what the builder did before: torchvision's model, then the CIFAR stem
    ref = getattr(torchvision.models, arch)(weights=None, num_classes=10, norm_layer=norm_layer("batch"))
    ref.conv1, ref.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    nn.init.kaiming_normal_(ref.conv1.weight, mode="fan_out", nonlinearity="relu")
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(ours.train()(x), ref.train()(x), rtol=0, atol=0)


def test_with_batch_norm_the_cifar_resnet_is_the_papers():
    net = build("resnet20", "batch").train()
    widths, blocks = (16, 32, 64), 3
    count = 3 * 16 * 9 + 2 * 16 + 64 * 10 + 10  # stem conv and norm, classifier
    for i, w in enumerate(widths):
        for j in range(blocks):
            cin = widths[i - 1] if i and not j else w
            count += (cin * w + w * w) * 9 + 2 * 2 * w
    assert sum(p.numel() for p in net.parameters()) == count

    def plain(x):  # He et al. (2016): relu(bn(conv)), and relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x)
        x = F.relu(ref.stem[1](ref.stem[0](x)))
        for b in ref.blocks:
            x = F.relu(b.norm2(b.conv2(F.relu(b.norm1(b.conv1(x))))) + b.shortcut(x))
        return ref.fc(x.mean(dim=(2, 3)))

    ref = copy.deepcopy(net)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(net(x), plain(x), rtol=0, atol=0)


def test_zero_init_residual_with_frn_starts_every_block_as_the_identity():
    net = build_model({"name": "resnet20", "zero_init_residual": True}, {"name": "frn"}, num_classes=10, in_channels=3)
    block = net.blocks[1]  # same width in and out: the shortcut is x itself
    x = torch.randn(2, 16, 8, 8).relu()
    torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize("norm,relu", [("frn", nn.Identity), ("batch", nn.ReLU)])
def test_style_net_relu_only_after_norms_that_do_not_activate(norm, relu):
    net = style_net(norm_layer(norm))
    assert type(net.conv1[2]) is relu and type(net.up1.conv[2]) is relu
    last = [b.body[-1] for b in net.res]
    assert last and not any(activates(m) for m in last)
