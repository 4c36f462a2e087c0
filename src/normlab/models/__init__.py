"""Model registry: a name, a builder and the tensor layout its norms see."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from normlab.errors import unknown_name
from normlab.models.resnet_cifar import resnet_cifar
from normlab.models.resnet_tv import resnet_tv
from normlab.models.ws import standardize_convs
from normlab.norms import norm_layer


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]
    layout: str  # what the model's norms see: "nchw" images or "nlc" tokens


MODELS: dict[str, ModelSpec] = {
    "resnet20": ModelSpec(functools.partial(resnet_cifar, 20), "nchw"),
    "resnet32": ModelSpec(functools.partial(resnet_cifar, 32), "nchw"),
    "resnet56": ModelSpec(functools.partial(resnet_cifar, 56), "nchw"),
    "resnet18": ModelSpec(functools.partial(resnet_tv, "resnet18"), "nchw"),
    "resnet50": ModelSpec(functools.partial(resnet_tv, "resnet50"), "nchw"),
}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise unknown_name("model", name, MODELS, "model")
    return MODELS[name]


def build_model(model_cfg: dict, norm_cfg: dict, **task_kwargs) -> nn.Module:
    """Build ``model_cfg['name']`` with every norm from ``norm_cfg`` (``name`` plus knobs).

    ``model_cfg`` keys other than ``name`` and ``ws`` go to the builder, as do ``task_kwargs``
    (what the data decides: classes, input channels, vocabulary).
    """
    model_cfg, norm_cfg = dict(model_cfg), dict(norm_cfg)
    spec = model_spec(model_cfg.pop("name"))
    ws = model_cfg.pop("ws", False)
    layer = norm_layer(norm_cfg.pop("name"), spec.layout, **norm_cfg)
    model = spec.build(norm_layer=layer, **model_cfg, **task_kwargs)
    return standardize_convs(model) if ws else model
