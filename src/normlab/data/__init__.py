"""Dataset registry: a name and a loader that returns in-memory ``ImageSplits``."""

from __future__ import annotations

import functools
import inspect

from normlab.data.cifar import load_cifar
from normlab.data.folder import load_image_folder
from normlab.data.mnist import load_mnist5k
from normlab.data.module import ImageDataModule
from normlab.errors import ConfigError, unknown_name

DATASETS = {
    "mnist5k": load_mnist5k,
    "cifar10": functools.partial(load_cifar, "cifar10"),
    "cifar100": functools.partial(load_cifar, "cifar100"),
    "image_folder": load_image_folder,
}

# Keys of conf/data/*.yaml that the datamodule uses; all others go to the loader.
MODULE_KEYS = {"name", "batch", "eval_batch", "subset", "augment"}


def build_image_datamodule(data_cfg: dict, seed: int, channels_last: bool = False) -> ImageDataModule:
    cfg = dict(data_cfg)
    name = cfg["name"]
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS, "data")
    loader = DATASETS[name]
    loader_kwargs = {k: v for k, v in cfg.items() if k not in MODULE_KEYS}
    accepted = inspect.signature(loader).parameters
    unknown = sorted(set(loader_kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"dataset '{name}' has no option {', '.join(unknown)} (it takes: {', '.join(accepted)}). "
            f"Fix: remove it from the command or the data config."
        )
    if "seed" in accepted:
        loader_kwargs.setdefault("seed", 0)  # the split seed: fixed, so every run sees the same split
    augment = cfg.get("augment") or {}
    return ImageDataModule(
        functools.partial(loader, **loader_kwargs), cfg["batch"], cfg.get("eval_batch", 500), cfg.get("subset"),
        augment.get("crop_pad", 0), augment.get("flip", False), seed, channels_last,
    )
