"""Dataset registry: a name and a loader that returns in-memory ``ImageSplits``."""

from __future__ import annotations

import functools

from normlab.data.cifar import load_cifar
from normlab.data.folder import load_image_folder
from normlab.data.loaders import bind_loader
from normlab.data.mnist import load_mnist5k
from normlab.data.module import ImageDataModule

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
    load = bind_loader(cfg, DATASETS, "dataset", MODULE_KEYS)
    augment = cfg.get("augment") or {}
    return ImageDataModule(
        load,
        cfg["batch"],
        cfg.get("eval_batch", 500),
        cfg.get("subset"),
        augment.get("crop_pad", 0),
        augment.get("flip", False),
        seed,
        channels_last,
    )
