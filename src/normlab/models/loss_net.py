"""The fixed loss network of perceptual losses (Johnson et al. 2016, Sec. 3): VGG-16 features.

- ``vgg16``: torchvision's VGG-16 with its ImageNet weights (Simonyan & Zisserman 2015), the
  network of Johnson et al. Downloaded once (about 530 MB) into torch's cache.
- ``random_vgg``: the same layer layout with fixed random weights, drawn from a private seeded
  generator, so it is the same network on every run and machine with no download. Random
  convolutional features already capture texture statistics: Gram matrices of random-weight
  networks synthesise textures (Ustyuzhaninov, Brendel, Gatys & Bethge 2017) and invert
  images (He, Wang & Hopcroft 2016). What they do not carry is ImageNet's notion of objects,
  so content is kept as edges and colours rather than as recognisable parts.

Both stop at relu4_3, the deepest layer Johnson et al. use, and are frozen: no parameter
requires a gradient, and the network stays in eval mode, while gradients still flow to the
input image.
"""

from __future__ import annotations

import torch
from torch import nn

from normlab.errors import ConfigError, unknown_name

# VGG-16's convolutional part up to relu4_3 ("M" = 2x2 max-pool), and where its ReLUs sit.
VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512]
VGG16_RELUS = {
    "relu1_1": 1,
    "relu1_2": 3,
    "relu2_1": 6,
    "relu2_2": 8,
    "relu3_1": 11,
    "relu3_2": 13,
    "relu3_3": 15,
    "relu4_1": 18,
    "relu4_2": 20,
    "relu4_3": 22,
}
# torchvision's ImageNet input normalization, which the VGG-16 weights expect.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RANDOM_SEED = 0  # part of the network's definition, never the run's seed


def vgg_layers(width: float = 1.0) -> nn.Sequential:
    layers, cin = [], 3
    for v in VGG16_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            cout = max(1, round(v * width))
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            cin = cout
    return nn.Sequential(*layers)


def vgg16_imagenet() -> nn.Sequential:
    from torchvision.models import VGG16_Weights, vgg16

    try:
        features = vgg16(weights=VGG16_Weights.IMAGENET1K_V1).features
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a broken download is a RuntimeError
        raise ConfigError(
            f"torchvision's VGG-16 ImageNet weights are not cached and could not be downloaded ({err}). "
            f"Fix: run once online to cache them, or set task.loss.network=random_vgg (no download)."
        ) from None
    return features[: VGG16_RELUS["relu4_3"] + 1]


def random_vgg(width: float = 1.0, seed: int = RANDOM_SEED) -> nn.Sequential:
    """VGG-16's layout with He-normal weights (He et al. 2015), so activations keep their scale
    through the depth, and zero biases; drawn from a private generator so the global RNG, and
    with it the run, is untouched."""
    with torch.random.fork_rng(devices=[]):  # nn.Conv2d's default init draws from the global RNG
        net = vgg_layers(width)
    g = torch.Generator().manual_seed(seed)
    for m in net:
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                m.bias.zero_()
    return net


class LossNetwork(nn.Module):
    """Frozen feature extractor: image in [0, 1] -> ``{layer name: (N, C, H, W) features}``."""

    def __init__(self, features: nn.Sequential, layers: list[str]):
        super().__init__()
        unknown = sorted(set(layers) - set(VGG16_RELUS))
        if unknown:
            raise unknown_name("loss layer", unknown[0], VGG16_RELUS, "task.loss.style_layers / content_layer")
        self.index = {name: VGG16_RELUS[name] for name in layers}
        self.features = features[: max(self.index.values()) + 1]  # nothing deeper is ever needed
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LossNetwork:
        return super().train(False)  # frozen: Lightning's model.train() must not reach it

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, wanted = {}, {i: name for name, i in self.index.items()}
        h = (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in wanted:
                out[wanted[i]] = h
        return out


def build_loss_network(network: str, layers: list[str], width: float = 1.0) -> LossNetwork:
    """``width`` narrows ``random_vgg`` only: pretrained weights come in one width."""
    if network == "vgg16":
        return LossNetwork(vgg16_imagenet(), layers)
    if network == "random_vgg":
        return LossNetwork(random_vgg(width), layers)
    raise unknown_name("loss network", network, ("vgg16", "random_vgg"), "task.loss.network")
