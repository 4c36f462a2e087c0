"""From a data config to a loader call: one lookup and one option check for every task."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from normlab.errors import ConfigError, unknown_name


def bind_loader(cfg: dict, registry: dict[str, Callable], kind: str, module_keys: set[str]) -> functools.partial:
    """``registry[cfg['name']]`` with every key not in ``module_keys`` as a keyword argument.

    An unknown name or an option the loader does not take is a one-line ConfigError.
    """
    name = cfg["name"]
    if name not in registry:
        raise unknown_name(kind, name, registry, "data")
    loader = registry[name]
    kwargs = {k: v for k, v in cfg.items() if k not in module_keys}
    accepted = inspect.signature(loader).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"dataset '{name}' has no option {', '.join(unknown)} (it takes: {', '.join(accepted)}). "
            f"Fix: remove it from the command or the data config."
        )
    if "seed" in accepted:
        kwargs.setdefault("seed", 0)  # the split seed: fixed, so every run sees the same split
    return functools.partial(loader, **kwargs)
