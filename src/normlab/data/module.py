"""The LightningDataModule for image classification on in-memory tensors.

Batches leave ``TensorBatches`` as uint8; after they reach the device, ``on_after_batch_transfer``
augments the training batches and scales every batch to zero mean and unit variance per
channel, all as whole-batch tensor operations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch

from normlab.data.augment import augment
from normlab.data.batches import TensorBatches
from normlab.data.splits import ImageSplits, subsample
from normlab.errors import ConfigError

log = logging.getLogger(__name__)


class ImageDataModule(L.LightningDataModule):
    def __init__(
        self,
        load: Callable[[], ImageSplits],
        batch: int,
        eval_batch: int = 500,
        subset: int | None = None,
        crop_pad: int = 0,
        flip: bool = False,
        seed: int = 0,
        channels_last: bool = False,
    ):
        super().__init__()
        self.load, self.batch, self.eval_batch, self.subset = load, batch, eval_batch, subset
        self.crop_pad, self.flip, self.seed, self.channels_last = crop_pad, flip, seed, channels_last
        self.splits: ImageSplits | None = None
        self._said_dropped = False

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            splits = self.load()
            if self.subset and self.subset > len(splits.train):
                raise ConfigError(
                    f"data.subset={self.subset} is more than the {len(splits.train)} training images. "
                    f"Fix: set data.subset to at most {len(splits.train)}, or null for all of them."
                )
            # Subset seed fixed at 0: seeds vary the initialisation and order, not the data.
            splits.train = subsample(splits.train, self.subset, 0)
            # Image folders list files class by class; a fixed shuffle makes every evaluation
            # batch a mix of classes, which matters as soon as batch statistics are used.
            g = torch.Generator().manual_seed(0)
            splits.val = splits.val.take(torch.randperm(len(splits.val), generator=g))
            splits.test = splits.test.take(torch.randperm(len(splits.test), generator=g))
            self.splits = splits
            mean, std = splits.channel_stats()
            self.mean, self.std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)

    @property
    def num_classes(self) -> int:
        return len(self.splits.classes)

    def _batches(self, split, batch_size: int, train: bool) -> TensorBatches:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        # drop_last in training: a ragged last batch (size 1 at worst) gives BatchNorm
        # statistics of a different quality than every other step.
        return TensorBatches(split, batch_size, shuffle=train, drop_last=train, seed=self.seed, rank=rank, world=world)

    def train_dataloader(self):
        batches = self._batches(self.splits.train, self.batch, train=True)
        if len(batches) == 0:  # else Lightning trains no step, silently
            per_device = len(self.splits.train) // batches.world
            raise ConfigError(
                f"data.batch={self.batch} is more than the {per_device} training images each of the "
                f"{batches.world} device(s) gets, so training would take no step. Fix: set data.batch "
                f"to at most {per_device}, use more training images (data.subset), or fewer devices."
            )
        if batches.dropped() and not self._said_dropped:
            self._said_dropped = True  # once per run, not once per epoch
            log.info(
                "training leaves out the last partial batch of every epoch: %d of %d images per device "
                "(a different few each epoch, since the order changes)",
                batches.dropped(),
                len(self.splits.train) // batches.world,
            )
        return batches

    def val_dataloader(self):
        return self._batches(self.splits.val, self.eval_batch, train=False)

    def test_dataloader(self):
        return self._batches(self.splits.test, self.eval_batch, train=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        return self.prepare(batch, train=self.trainer is not None and self.trainer.training)

    def prepare(self, batch, train: bool):
        """A uint8 batch on its device -> augmented (in training) and standardized float images."""
        x, y = batch
        if train:
            x = augment(x, self.crop_pad, self.flip)
        x = (x.float().div_(255) - self.mean.to(x.device)) / self.std.to(x.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y
