"""The LightningDataModule for character-level language modelling.

``setup`` loads the three splits as strings, builds the vocabulary from the training split
and encodes each split once into an in-memory tensor of ids; batches are windows cut from
those tensors (``windows.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L

from normlab.data.loaders import bind_loader
from normlab.data.text import SPLITS, TEXT_DATASETS, TextSplits
from normlab.data.vocab import CharVocab
from normlab.data.windows import FixedWindows, RandomWindows

log = logging.getLogger(__name__)

# Keys of conf/data/*.yaml that the datamodule uses; all others go to the loader.
MODULE_KEYS = {"name", "batch", "train_batches", "eval_batch", "eval_windows"}


class CharDataModule(L.LightningDataModule):
    def __init__(
        self,
        load: Callable[[], TextSplits],
        block_size: int,
        batch: int,
        train_batches: int = 250,
        eval_batch: int = 64,
        eval_windows: int = 256,
        seed: int = 0,
        name: str = "text",
    ):
        super().__init__()
        self.load, self.block_size, self.batch, self.train_batches = load, block_size, batch, train_batches
        self.eval_batch, self.eval_windows, self.seed, self.name = eval_batch, eval_windows, seed, name
        self.vocab: CharVocab | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.vocab is not None:
            return
        splits = self.load()
        self.documents = splits.documents
        self.vocab = CharVocab.from_text(splits.train)
        self.ids = {s: self.vocab.encode(getattr(splits, s)) for s in SPLITS}
        unknown = {s: int((self.ids[s] == 0).sum()) for s in ("val", "test")}
        log.info(
            "%s: %s characters (train/val/test), %d documents in train, vocabulary %d + unknown; "
            "unknown characters in val %d, test %d",
            self.name,
            "/".join(f"{len(self.ids[s]):,}" for s in SPLITS),
            len(self.documents.get("train", [])),
            len(self.vocab) - 1,
            unknown["val"],
            unknown["test"],
        )

    def _rank(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_dataloader(self):
        rank, world = self._rank()
        return RandomWindows(self.ids["train"], self.block_size, self.batch, self.train_batches, self.seed, rank, world)

    def val_dataloader(self):
        return FixedWindows(self.ids["val"], self.block_size, self.eval_batch, self.eval_windows, *self._rank(), "val")

    def test_dataloader(self):
        return FixedWindows(
            self.ids["test"], self.block_size, self.eval_batch, self.eval_windows, *self._rank(), "test"
        )


def build_text_datamodule(data_cfg: dict, block_size: int, seed: int) -> CharDataModule:
    cfg = dict(data_cfg)
    name = cfg["name"]
    load = bind_loader(cfg, TEXT_DATASETS, "text dataset", MODULE_KEYS)
    return CharDataModule(
        load,
        block_size,
        cfg["batch"],
        cfg.get("train_batches", 250),
        cfg.get("eval_batch", 64),
        cfg.get("eval_windows", 256),
        seed,
        name,
    )
