from __future__ import annotations

import pytest
import torch
from torch import nn

from normlab.models import MODELS, build_model
from normlab.models.ws import WSConv2d
from normlab.norms import NORMS, supports


@pytest.fixture
def one_thread():
    """Small forwards gain nothing from a second thread, and lose a lot to it on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_norm_builds_every_model(model, name, one_thread):
    if not supports(name, MODELS[model].layout):
        pytest.skip(f"{name} has no meaning for layout {MODELS[model].layout}")
    if MODELS[model].layout != "nchw":
        pytest.skip("token models are covered by their task's tests")
    if model == "style_net":
        pytest.skip("an image-to-image network, not a classifier: covered by tests/tasks/test_style.py")
    net = build_model({"name": model}, {"name": name}, num_classes=10, in_channels=3)
    with torch.no_grad():  # 16x16, no graph: every norm x every model stays cheap; the last maps are still 2x2
        out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 10)
    norms = [m for m in net.modules() if isinstance(m, NORMS[name])]
    assert norms, "the factory's norm must be in the network"
    if name != "none":
        foreign = [
            m
            for m in net.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and name not in ("batch", "sync_batch")
        ]  # sync_batch is BatchNorm until DDP on GPUs converts it
        assert not foreign, "no BatchNorm may be left behind when another norm is asked for"


@pytest.mark.parametrize("depth,blocks", [(8, 3), (20, 9), (32, 15), (56, 27)])
def test_cifar_resnet_depths(depth, blocks):
    net = build_model({"name": f"resnet{depth}"}, {"name": "batch"}, num_classes=10, in_channels=3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(net.blocks) == blocks and len(convs) + 1 == depth  # convs plus the classifier


@pytest.mark.parametrize("model", ["resnet20", "resnet18", "resnet50"])
def test_zero_init_residual_makes_every_block_start_as_identity(model):
    net = build_model({"name": model, "zero_init_residual": True}, {"name": "group"}, num_classes=10, in_channels=3)
    last = [
        m.norm2 if hasattr(m, "norm2") else getattr(m, "bn3", getattr(m, "bn2", None))
        for m in net.modules()
        if type(m).__name__ in ("BasicBlock", "Bottleneck")
    ]
    assert last and all(torch.all(n.weight == 0) for n in last)


def test_weight_standardization_swaps_every_conv_and_standardizes_weights():
    net = build_model({"name": "resnet20", "ws": True}, {"name": "group"}, num_classes=10, in_channels=3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(c, WSConv2d) for c in convs)
    conv = convs[3]
    x = torch.randn(1, conv.in_channels, 8, 8)
    w = conv.weight
    w_hat = (w - w.mean((1, 2, 3), keepdim=True)) / torch.sqrt(
        w.var((1, 2, 3), unbiased=False, keepdim=True) + conv.eps
    )
    torch.testing.assert_close(conv(x), nn.functional.conv2d(x, w_hat, None, conv.stride, conv.padding))


def test_unknown_model_suggests_the_closest():
    from normlab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model 'resnet21'.*Did you mean"):
        build_model({"name": "resnet21"}, {"name": "batch"}, num_classes=10, in_channels=3)


def test_resnet10_has_four_stages_of_one_block_with_projection_shortcuts_where_the_shape_changes():
    net = build_model({"name": "resnet10"}, {"name": "batch"}, num_classes=10, in_channels=3)
    widths = [b.conv2.out_channels for b in net.blocks]
    projected = [b.projection is not None for b in net.blocks]
    assert widths == [16, 32, 64, 128] and projected == [False, True, True, True]
    # depth counts the main path (stem, 2 convs per block, classifier), not the 1x1 shortcuts
    main = [m for b in net.blocks for m in (b.conv1, b.conv2)]
    assert len(main) + 2 == 10
    x = torch.randn(2, 3, 32, 32)
    b = net.blocks[1].eval()
    with torch.no_grad():  # the shortcut is conv then norm, on the block's input
        torch.testing.assert_close(b.shortcut(x := torch.randn(2, 16, 8, 8)), b.projection[1](b.projection[0](x)))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_depth_that_does_not_fit_the_stages_is_a_config_error():
    from normlab.errors import ConfigError
    from normlab.models.resnet_cifar import resnet_cifar
    from normlab.norms import norm_layer

    with pytest.raises(ConfigError, match="4 stages has depth 8n\\+2, got 12"):
        resnet_cifar(12, norm_layer=norm_layer("batch"), widths=(16, 32, 64, 128))
    with pytest.raises(ConfigError, match="shortcut 'B'"):
        resnet_cifar(10, norm_layer=norm_layer("batch"), widths=(16, 32, 64, 128), shortcut="B")
