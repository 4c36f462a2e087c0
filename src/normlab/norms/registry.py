"""The norm factory: one table from a name to a layer, one calling convention.

    build_norm("group", 64, layout="nchw", num_groups=32)

Every layer takes ``(num_channels, layout, **knobs)``. A new norm is one file plus one line in
``NORMS``. Names are case- and ``_``/``-``-insensitive, as in timm's ``create_norm``. A layer
whose class sets ``layouts = ("nchw",)`` is refused for other layouts with one line. A name with a
dot is a class of one's own by dotted path (``norm=custom``), checked against ``contract.Norm``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from torch import nn

from normlab.errors import ConfigError, unknown_name
from normlab.norms.batch import BatchNorm
from normlab.norms.batch_instance import BatchInstanceNorm
from normlab.norms.batch_renorm import BatchRenorm
from normlab.norms.bln import BatchLayerNorm
from normlab.norms.bln_pooled import BatchLayerNormPooled
from normlab.norms.cond_instance import CondInstanceNorm
from normlab.norms.contract import declared, import_norm
from normlab.norms.evonorm_b0 import EvoNormB0
from normlab.norms.evonorm_s0 import EvoNormS0
from normlab.norms.fast import (  # noqa: F401 (each registers its layer's fast path)
    batch_instance,
    batch_renorm,
    bln_pooled,
    evonorm_b0,
    evonorm_s0,
    frn,
    ghost_batch,
    layer2d,
    rms,
    switchable,
)
from normlab.norms.frn import FilterResponseNorm
from normlab.norms.ghost_batch import GhostBatchNorm
from normlab.norms.group import GroupNorm, GroupNorm1
from normlab.norms.instance import InstanceNorm
from normlab.norms.layer import LayerNorm
from normlab.norms.layer2d import LayerNorm2d
from normlab.norms.layout import check_batch_statistics, check_layout
from normlab.norms.none import NoNorm
from normlab.norms.rms import RMSNorm
from normlab.norms.switchable import SwitchableNorm
from normlab.norms.sync_batch import SyncBatchNorm

NORMS: dict[str, type[nn.Module]] = {
    "batch": BatchNorm,
    "layer": LayerNorm,
    "instance": InstanceNorm,
    "group": GroupNorm,
    "rms": RMSNorm,
    "bln_pooled": BatchLayerNormPooled,
    "bln": BatchLayerNorm,
    "none": NoNorm,
    "batch_renorm": BatchRenorm,
    "ghost_batch": GhostBatchNorm,
    "frn": FilterResponseNorm,
    "evonorm_b0": EvoNormB0,
    "evonorm_s0": EvoNormS0,
    "switchable": SwitchableNorm,
    "layer2d": LayerNorm2d,
    "group1": GroupNorm1,
    "batch_instance": BatchInstanceNorm,
    "cond_instance": CondInstanceNorm,
    "sync_batch": SyncBatchNorm,
}

NormLayer = Callable[[int], nn.Module]


def canonical(name: str) -> str:
    if "." in str(name):  # package.module.Class (norm=custom): imported and checked
        import_norm(name)
        return name
    key = str(name).lower().replace("-", "").replace("_", "")
    for known in NORMS:
        if known.replace("_", "") == key:
            return known
    raise unknown_name("norm", name, NORMS, "norm")


def norm_class(name: str) -> type[nn.Module]:
    return import_norm(name) if "." in str(name) else NORMS[canonical(name)]


def name_and_knobs(norm_cfg: dict) -> tuple[str, dict]:
    """A norm config's name, and its knobs: every other key but ``target`` (norm=custom's dotted path)."""
    return norm_cfg["name"], {k: v for k, v in norm_cfg.items() if k not in ("name", "target")}


def knobs_of(name: str) -> list[str]:
    """The keyword arguments a norm accepts besides ``num_channels`` and ``layout``."""
    params = inspect.signature(norm_class(name).__init__).parameters
    return [p for p in params if p not in ("self", "num_channels", "layout")]


def check_knobs(name: str, knobs: dict) -> None:
    extra = sorted(set(knobs) - set(knobs_of(name)))
    if extra:
        raise ConfigError(
            f"norm '{canonical(name)}' has no option {', '.join(extra)} "
            f"(it takes: {', '.join(knobs_of(name)) or 'nothing'}). Fix: remove it from the command or norm config."
        )


def supports(name: str, layout: str) -> bool:
    """Whether a norm has a meaning for a layout; a class says which with ``layouts`` (default: all)."""
    return check_layout(layout) in declared(norm_class(name), "layouts")


def check_supports(name: str, layout: str) -> None:
    if not supports(name, layout):
        other = [n for n in NORMS if supports(n, layout)]
        raise ConfigError(
            f"norm '{canonical(name)}' has no meaning for layout '{layout}' (it supports: "
            f"{', '.join(norm_class(name).layouts)}). Fix: use it with a model of that layout, or set norm=<one of "
            f"{', '.join(other)}>."
        )


def build_norm(name: str, num_channels: int, layout: str = "nchw", **knobs) -> nn.Module:
    check_layout(layout)
    check_knobs(name, knobs)
    check_supports(name, layout)
    layer = norm_class(name)(num_channels, layout=layout, **knobs)
    if declared(layer, "batch_dependent"):
        layer.register_forward_pre_hook(_check_batch_statistics)
    return layer


def _check_batch_statistics(layer: nn.Module, args: tuple) -> None:
    # One check for every norm that uses the batch, whoever wrote its forward: a batch with one
    # value per channel is a sentence, not a kernel error or a 0/0. Eval mode uses running
    # statistics, unless the layer keeps none.
    if layer.training or declared(layer, "track_running_stats") is False:
        check_batch_statistics(args[0], layer.layout, type(layer).__name__)


def activates(layer: nn.Module) -> bool:
    """Whether a norm carries its own activation (FRN's TLU, EvoNorm's), so no ReLU should follow it."""
    return declared(layer, "activates")


def linear_norm(make: NormLayer, num_channels: int) -> nn.Module:
    """The norm for a place that no activation follows (a residual branch's last norm, a projection
    shortcut's): ``make(C)``, or its affine-only form ``make(C, apply_act=False)`` if that one activates.
    The ResNets of the TF TPU reference and timm build their normalization-activation layers so there."""
    layer = make(num_channels)
    return make(num_channels, apply_act=False) if activates(layer) else layer


def relu_after(norm: nn.Module) -> nn.Module:
    """The ReLU that follows ``norm`` in a model: none (Identity) if the norm activates itself."""
    return nn.Identity() if activates(norm) else nn.ReLU()


def norm_layer(name: str, layout: str = "nchw", **knobs) -> NormLayer:
    """``norm_layer(C)`` builds the norm; the form torchvision's ``norm_layer=`` expects."""
    check_layout(layout)
    check_knobs(name, knobs)
    check_supports(name, layout)
    return functools.partial(build_norm, name, layout=layout, **knobs)
