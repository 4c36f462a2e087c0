"""Which norm layer of a model sees how many channels, and which of them a norm cannot serve.

When a norm fails to build inside a model (GroupNorm whose group count does not divide a
layer's channels), the error from the factory knows one channel count and no layer name. So the
model is built once more with a probe in every norm's place; the probes record their channel
counts, and ``named_modules`` gives each its path (``blocks.3.norm1``). The error then names the
layers, their widths and the settings that work for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from normlab.errors import ConfigError
from normlab.norms.registry import build_norm, canonical

SHOWN = 3  # layers named in a message; the rest are counted


class WidthProbe(nn.Identity):
    """Stands in for a norm while a model is built: records ``num_channels``, does nothing."""

    weight = bias = None  # what builders look at when they zero-init a block's last norm

    def __init__(self, num_channels: int):
        super().__init__()
        self.num_channels = num_channels


def norm_widths(build: Callable[..., nn.Module], **kwargs) -> dict[str, int]:
    """``{module path: channels}`` of every norm ``build(norm_layer=..., **kwargs)`` creates."""
    model = build(norm_layer=WidthProbe, **kwargs)
    return {name: m.num_channels for name, m in model.named_modules() if isinstance(m, WidthProbe)}


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _layers(bad: dict[str, int]) -> str:
    shown = [f"{path} ({c} channels)" for path, c in list(bad.items())[:SHOWN]]
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    return ", ".join(shown) + more


def norm_build_error(
    norm: str, knobs: dict, layout: str, widths: dict[str, int], model: str, error: ConfigError
) -> ConfigError:
    """The factory's ``error``, restated with the layers it hits and the settings that fit them all."""
    bad = {}
    for path, channels in widths.items():
        try:
            build_norm(norm, channels, layout, **knobs)
        except ConfigError:
            bad[path] = channels
    if not bad:  # not a matter of widths: the factory's own sentence says it best
        return error
    every = sorted(set(widths.values()))
    valid = ", ".join(map(str, divisors(math.gcd(*every))))
    if canonical(norm) == "group":
        asked = (
            f"group_size={knobs['group_size']}" if knobs.get("group_size") else f"num_groups={knobs.get('num_groups')}"
        )
        key = "group_size" if knobs.get("group_size") else "num_groups"
        return ConfigError(
            f"GroupNorm with {asked} does not divide the channels of {len(bad)} layer(s) of {model}: {_layers(bad)}. "
            f"Fix: set norm.{key} to one of {valid}, which divide every width of {model} "
            f"({', '.join(map(str, every))})."
        )
    return ConfigError(f"norm '{norm}' cannot be built for {len(bad)} layer(s) of {model}: {_layers(bad)} ({error})")
