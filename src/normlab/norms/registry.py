"""The norm factory: one table from a name to a layer, one calling convention.

    build_norm("group", 64, layout="nchw", num_groups=32)

Every layer takes ``(num_channels, layout, **knobs)``. A new norm is one file plus one line in
``NORMS``. Names are case- and ``_``/``-``-insensitive, as in timm's ``create_norm``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from torch import nn

from normlab.errors import ConfigError, unknown_name
from normlab.norms.batch import BatchNorm
from normlab.norms.bln import BatchLayerNorm
from normlab.norms.group import GroupNorm
from normlab.norms.instance import InstanceNorm
from normlab.norms.layer import LayerNorm
from normlab.norms.layout import check_layout
from normlab.norms.none import NoNorm
from normlab.norms.rms import RMSNorm

NORMS: dict[str, type[nn.Module]] = {
    "batch": BatchNorm,
    "layer": LayerNorm,
    "instance": InstanceNorm,
    "group": GroupNorm,
    "rms": RMSNorm,
    "bln": BatchLayerNorm,
    "none": NoNorm,
}

NormLayer = Callable[[int], nn.Module]


def canonical(name: str) -> str:
    key = str(name).lower().replace("-", "").replace("_", "")
    for known in NORMS:
        if known.replace("_", "") == key:
            return known
    raise unknown_name("norm", name, NORMS, "norm")


def norm_class(name: str) -> type[nn.Module]:
    return NORMS[canonical(name)]


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


def build_norm(name: str, num_channels: int, layout: str = "nchw", **knobs) -> nn.Module:
    check_layout(layout)
    check_knobs(name, knobs)
    return norm_class(name)(num_channels, layout=layout, **knobs)


def norm_layer(name: str, layout: str = "nchw", **knobs) -> NormLayer:
    """``norm_layer(C)`` builds the norm; the form torchvision's ``norm_layer=`` expects."""
    check_layout(layout)
    check_knobs(name, knobs)
    return functools.partial(build_norm, name, layout=layout, **knobs)
