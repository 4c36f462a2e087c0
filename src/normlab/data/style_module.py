"""The LightningDataModule of the style task: random crops of in-memory content images.

Training batches are ``batch`` images drawn from the stored squares (every image equally often
per epoch); after they reach the device, ``on_after_batch_transfer`` takes one random
``crop`` x ``crop`` window and a random flip per image, as whole-batch tensor operations, and
scales to [0, 1]. An "epoch" is ``steps_per_epoch`` such batches, since the offline set has 8
images. Validation and test both use the held-out images, whole (there is nothing to select on
them that a separate test set would protect).
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch

from normlab.data.augment import random_flip
from normlab.data.batches import TensorBatches
from normlab.data.loaders import bind_loader
from normlab.data.photos import STYLE_DATASETS, StyleImages
from normlab.data.resumable import ResumableEpochs
from normlab.data.splits import Split
from normlab.errors import ConfigError

# Keys of conf/data/*.yaml that the datamodule uses; all others go to the loader.
MODULE_KEYS = {"name", "batch", "eval_batch", "crop", "steps_per_epoch", "flip"}


def random_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """One random ``size`` x ``size`` window per image of ``(N, C, H, W)``, as two gathers."""
    n, c, h, w = x.shape
    dy = torch.randint(0, h - size + 1, (n, 1, 1, 1), device=x.device)
    dx = torch.randint(0, w - size + 1, (n, 1, 1, 1), device=x.device)
    rows = (torch.arange(size, device=x.device).view(1, 1, size, 1) + dy).expand(n, c, size, w)
    out = x.gather(2, rows)  # (N, C, size, W)
    cols = (torch.arange(size, device=x.device).view(1, 1, 1, size) + dx).expand(n, c, size, size)
    return out.gather(3, cols)  # (N, C, size, size)


class RandomImageBatches(ResumableEpochs):
    """``steps`` batches of images per epoch; each rank takes every ``world``-th index of the same
    draw, so the ranks see disjoint images. Resumable mid-epoch (``resumable.py``)."""

    def __init__(self, images: torch.Tensor, batch_size: int, steps: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.images, self.batch_size, self.steps = images, batch_size, steps
        self.seed, self.rank, self.world = seed, rank, world

    def __len__(self) -> int:
        return self.steps

    def plan(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + epoch)  # seed + epoch: a resumed run replays
        n, need = len(self.images), self.steps * self.batch_size * self.world
        idx = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-need // n))])[:need]
        return idx[self.rank :: self.world]

    def batch(self, idx: torch.Tensor, b: int):
        chunk = idx[b * self.batch_size : (b + 1) * self.batch_size]
        return self.images[chunk], chunk


class StyleDataModule(L.LightningDataModule):
    def __init__(
        self,
        load: Callable[[], StyleImages],
        batch: int,
        crop: int,
        eval_batch: int = 16,
        steps_per_epoch: int | None = None,
        flip: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.load, self.batch, self.crop, self.eval_batch = load, batch, crop, eval_batch
        self.steps_per_epoch, self.flip, self.seed = steps_per_epoch, flip, seed
        self.images: StyleImages | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.images is None:
            images = self.load()
            if self.crop > min(images.train.shape[-2:]):
                raise ConfigError(
                    f"data.crop={self.crop} is larger than the stored images ({images.train.shape[-1]} px). "
                    f"Fix: lower data.crop or raise data.load_size."
                )
            self.images = images

    @property
    def style(self) -> torch.Tensor:
        return self.images.style.float().div(255)[None]  # (1, 3, h, w)

    @property
    def held_out(self) -> torch.Tensor:
        return self.images.val.float().div(255)  # (M, 3, E, E)

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_dataloader(self):
        steps = self.steps_per_epoch or max(len(self.images.train) // self.batch, 1)
        return RandomImageBatches(self.images.train, self.batch, steps, self.seed, *self._rank_world())

    def val_dataloader(self):
        val = Split(self.images.val, torch.arange(len(self.images.val)))
        return TensorBatches(
            val,
            self.eval_batch,
            shuffle=False,
            drop_last=False,
            seed=self.seed,
            rank=self._rank_world()[0],
            world=self._rank_world()[1],
        )

    def test_dataloader(self):
        return self.val_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, idx = batch
        if self.trainer is not None and self.trainer.training:
            x = random_crops(x, self.crop)
            x = random_flip(x) if self.flip else x
        return x.float().div_(255), idx


def build_style_datamodule(data_cfg: dict, seed: int) -> StyleDataModule:
    cfg = dict(data_cfg)
    load = bind_loader(cfg, STYLE_DATASETS, "style dataset", MODULE_KEYS)
    return StyleDataModule(
        load,
        cfg["batch"],
        cfg["crop"],
        cfg.get("eval_batch", 16),
        cfg.get("steps_per_epoch"),
        cfg.get("flip", True),
        seed,
    )
