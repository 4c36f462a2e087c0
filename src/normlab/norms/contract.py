"""The one contract of a norm: everything normlab reads from a norm class or layer, in one place.

A norm is an ``nn.Module`` class built as ``cls(num_channels, layout="nchw", **knobs)``, every
knob with a default (``conf/norm/<name>.yaml`` shows the ones a user should see). ``Norm`` names
the attributes the framework reads; ``declared`` reads one, with the default written here, from
any module. ``problems`` says what a class gets wrong, and ``import_norm`` loads a researcher's
own norm by dotted path (``norm=custom norm.target=my_pkg.my_norms.MyNorm``), refusing in one
line a path that does not import or a class that breaks the contract.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from torch import nn

from normlab.errors import ConfigError
from normlab.norms.layout import LAYOUTS

REQUIRED = ("axes", "batch_dependent")  # every norm class declares these itself
FLAGS = ("batch_dependent", "activates", "instance_stats", "one_input_size")


class Norm(Protocol):
    """What normlab reads from a norm; defaults are those of a norm that does not declare it."""

    layout: str
    """The layout it was built for, kept by the layer (the factory's batch-size check reads it)."""
    axes: ClassVar[dict[str, str]] = {}
    """What one statistic reduces over, in words, per layout (explain_norm, the LM's warnings)."""
    batch_dependent: bool = False
    """One sample's output depends on the others in training: batch-size checks, PreciseBN,
    ``test/err_batch_stats``, ``norm_images`` in the run's scale line."""
    layouts: ClassVar[tuple[str, ...]] = LAYOUTS
    """The layouts it has a meaning for; the factory refuses the others in one line."""
    activates: bool = False
    """It carries its own activation: the models put no ReLU after it. Such a norm takes an
    ``apply_act`` knob; ``apply_act=False`` is its affine-only form, used before a residual sum."""
    instance_stats: bool = False
    """Per-sequence statistics over L in every mode, eval too: the LM warns val/test are not causal."""
    mixes_tokens: bool | None = None
    """Whether its ``nlc`` statistics in training span several tokens; None: batch_dependent or instance_stats."""
    one_input_size: bool = False
    """Statistics per position: training and evaluation must use one image size (refused before the run)."""
    no_weight_decay: tuple[str, ...] = ()
    """Names of its parameters the optimizer does not decay (mixing weights)."""
    lr_scale: dict[str, float] | None = None
    """``{parameter name: factor}`` on the learning rate of those parameters."""
    track_running_stats: bool = True
    """False: batch statistics in eval mode too, so a batch of one value per channel is refused there."""
    weight: Any = None
    """The per-channel gain, if any: set to 0 in a residual branch's last norm (zero-init, resnet_cifar)."""
    running_mean: Any = None
    """With ``running_var`` and ``momentum``: running statistics that PreciseBN re-estimates
    (at ``momentum = 1``, ``renorm = False`` where a layer has one, over ``virtual_batch``
    samples where it has that); the diagnostics restore every other buffer and attribute."""
    mixing_weights: Callable[[], dict[str, float]] | None = None
    """A method: the mixture it learned, logged every epoch as ``mixing/<layer>/<key>``."""
    start_epoch: Callable[[], None] | None = None
    """A method, called at every training epoch's start (averages over one epoch)."""


def declared(norm: Any, name: str) -> Any:
    """``norm.<name>``, or the contract's default where a class or layer does not declare it."""
    return getattr(norm, name, getattr(Norm, name))


def mixes_tokens(norm: Any) -> bool:
    """Whether a token sees statistics of other tokens in training (``nlc``)."""
    said = declared(norm, "mixes_tokens")
    return bool(declared(norm, "batch_dependent") or declared(norm, "instance_stats")) if said is None else said


def problems(cls: Any) -> list[str]:
    """What a norm class gets wrong against the contract, one sentence each (empty: nothing)."""
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        return [f"{cls!r} is not a torch.nn.Module class"]
    found = [f"it declares no class attribute `{a}`" for a in REQUIRED if a not in dir(cls)]
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if not params or params[0].name != "num_channels" or "layout" not in [p.name for p in params]:
        found.append("its constructor is not (num_channels, layout='nchw', **knobs)")
    found += [
        f"its knob `{p.name}` has no default"
        for p in params[1:]
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if declared(cls, "activates") and "apply_act" not in [p.name for p in params]:
        found.append("it declares `activates` but takes no knob `apply_act` (False: its form without the activation)")
    layouts = declared(cls, "layouts")
    if not layouts or set(layouts) - set(LAYOUTS):
        found.append(f"`layouts` = {layouts!r} is not a non-empty tuple of {', '.join(LAYOUTS)}")
    axes = declared(cls, "axes")
    found += [f"`axes` has no words for layout '{k}'" for k in layouts if not isinstance(axes, dict) or k not in axes]
    found += [f"`{a}` is not True or False" for a in FLAGS if not isinstance(declared(cls, a), bool)]
    found += [
        f"`{m}` is not a method"
        for m in ("mixing_weights", "start_epoch")
        if declared(cls, m) is not None and not callable(declared(cls, m))
    ]
    return found


def import_norm(path: str) -> type[nn.Module]:
    """The norm class at a dotted path ``package.module.Class``, checked against the contract."""
    module, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as err:  # any error of the user's module, said in one line
        raise ConfigError(
            f"norm.target={path} does not import ({type(err).__name__}: {err}). Fix: set norm.target "
            f"to package.module.Class, importable from the current directory or PYTHONPATH."
        ) from None
    found = problems(cls)
    if found:
        raise ConfigError(
            f"norm.target={path} breaks the norm contract: {found[0]}. Fix: see 'Adding a norm' in "
            f"docs/norms.md, and run python scripts/check_norm.py {path}."
        )
    return cls
