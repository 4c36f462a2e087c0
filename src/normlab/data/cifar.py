"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) through torchvision, downloaded when online.

The 50,000 training images are split into train and a class-balanced validation set; the
10,000 test images are the test split.
"""

from __future__ import annotations

from pathlib import Path

import torch

from normlab.data.splits import ImageSplits, Split, hold_out
from normlab.errors import ConfigError


def load_cifar(name: str, root: str, download: bool, val_size: int = 5000, seed: int = 0) -> ImageSplits:
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    try:
        train, test = (cls(root, train=t, download=download) for t in (True, False))
    except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found", or no network
        raise ConfigError(
            f"{name} is not in {Path(root).resolve()} and could not be downloaded ({err}). "
            f"Fix: run once online with data.download=true, set data.root to a folder holding it, "
            f"or use data=image_folder data.root=<folder of train/<class>/*.jpg and test/...>."
        ) from None

    def tensors(ds) -> Split:
        return Split(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets))

    train_split, val_split = hold_out(tensors(train), val_size, seed)
    return ImageSplits(train_split, val_split, tensors(test), list(train.classes))
