"""Image datasets held in memory as uint8 tensors, and how they are split.

Small datasets (MNIST, CIFAR) fit in memory many times over. Keeping them as one
``(N, C, H, W)`` uint8 tensor per split means batching is one index operation and
augmentation runs on whole batches (see ``augment.py``), with no per-sample Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Split:
    x: torch.Tensor  # (N, C, H, W) uint8
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: torch.Tensor) -> Split:
        return Split(self.x[idx], self.y[idx])


@dataclass
class ImageSplits:
    train: Split
    val: Split
    test: Split
    classes: list[str]

    @property
    def in_channels(self) -> int:
        return self.train.x.shape[1]

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images, in [0, 1] units."""
        x = self.train.x.float().div_(255)
        return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def class_balanced(split: Split, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``per_class`` random images of every class, and of all the rest."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(split), generator=g)
    chosen = torch.zeros(len(split), dtype=torch.bool)
    for c in split.y.unique():
        of_class = perm[split.y[perm] == c]
        chosen[of_class[:per_class]] = True
    picked = perm[chosen[perm]]
    return picked, perm[~chosen[perm]]


def hold_out(train: Split, val_size: int, seed: int) -> tuple[Split, Split]:
    """Carve a class-balanced validation split out of the training images."""
    classes = int(train.y.max()) + 1
    val_idx, train_idx = class_balanced(train, max(val_size // classes, 1), seed)
    return train.take(train_idx), train.take(val_idx)


def subsample(split: Split, size: int | None, seed: int) -> Split:
    """A class-balanced subset of ``size`` images (the CPU-budget experiments use this)."""
    if not size or size >= len(split):
        return split
    classes = int(split.y.max()) + 1
    idx, _ = class_balanced(split, max(size // classes, 1), seed)
    return split.take(idx)
