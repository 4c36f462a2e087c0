"""Model registry: a name, a builder and the tensor layout its norms see."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from normlab.errors import ConfigError, unknown_name
from normlab.models.gpt import GPT
from normlab.models.resnet_cifar import resnet_cifar
from normlab.models.resnet_tv import resnet_tv
from normlab.models.style_net import style_net
from normlab.models.widths import norm_build_error, norm_widths
from normlab.models.ws import standardize_convs
from normlab.norms.registry import name_and_knobs, norm_layer


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]
    layout: str  # what the model's norms see: "nchw" images or "nlc" tokens


MODELS: dict[str, ModelSpec] = {
    "resnet8": ModelSpec(functools.partial(resnet_cifar, 8), "nchw"),
    "resnet10": ModelSpec(functools.partial(resnet_cifar, 10, widths=(16, 32, 64, 128), shortcut="projection"), "nchw"),
    "resnet20": ModelSpec(functools.partial(resnet_cifar, 20), "nchw"),
    "resnet32": ModelSpec(functools.partial(resnet_cifar, 32), "nchw"),
    "resnet56": ModelSpec(functools.partial(resnet_cifar, 56), "nchw"),
    "resnet18": ModelSpec(functools.partial(resnet_tv, "resnet18"), "nchw"),
    "resnet50": ModelSpec(functools.partial(resnet_tv, "resnet50"), "nchw"),
    "gpt": ModelSpec(GPT, "nlc"),
    "style_net": ModelSpec(style_net, "nchw"),
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
    model_cfg = dict(model_cfg)
    name, (norm, norm_cfg) = model_cfg.pop("name"), name_and_knobs(norm_cfg)
    spec = model_spec(name)
    ws = model_cfg.pop("ws", False)
    layer = norm_layer(norm, spec.layout, **norm_cfg)
    try:
        model = spec.build(norm_layer=layer, **model_cfg, **task_kwargs)
    except ConfigError as err:  # a norm that does not fit some layer: say which layers, and what fits
        widths = norm_widths(spec.build, **model_cfg, **task_kwargs)
        raise norm_build_error(norm, norm_cfg, spec.layout, widths, name, err) from None
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        raise ConfigError(
            f"model '{name}' does not take {str(err).split('argument')[-1].strip()} "
            f"(given by the model config or by the task). Fix: remove that model option, "
            f"or choose a model made for this task."
        ) from None
    return standardize_convs(model) if ws else model
