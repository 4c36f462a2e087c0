"""Text sampled from the trained language model: the check a loss cannot replace.

At the end of training the model generates ``num`` continuations of ``prompt``, ``chars``
characters each, in eval mode with a fixed seed (so two runs with the same weights print the
same text). They are printed and written to ``samples.txt`` in the run directory. With a W&B
logger, the model is also sampled at the end of every epoch, and the table ``samples`` (epoch,
step, sample, text) grows by one row per sample and epoch: a W&B Table cannot change once
logged, so each epoch logs a new one with every row so far, and the last is the whole run.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from normlab.data.vocab import CharVocab

COLUMNS = ("epoch", "step", "sample", "text")


class TextSamples(L.Callback):
    def __init__(
        self,
        vocab: CharVocab,
        out_dir: str,
        num: int = 3,
        chars: int = 300,
        prompt: str = "\n\n",
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int = 0,
    ):
        self.vocab, self.out_dir, self.num, self.chars = vocab, Path(out_dir), num, chars
        self.prompt = prompt or "\n\n"  # generation needs context; instance norm needs two tokens
        self.temperature, self.top_k, self.seed = temperature, top_k, seed
        self.rows: list[list] = []  # (epoch, step, sample, text) of every epoch so far, for W&B

    @torch.no_grad()
    def sample(self, model: torch.nn.Module, device: torch.device) -> list[str]:
        was_training = model.training
        model.eval()  # running statistics in the norms, no dropout
        try:
            g = torch.Generator(device=device).manual_seed(self.seed)
            prompt = self.vocab.encode(self.prompt).long().to(device)
            idx = prompt.expand(self.num, -1)  # (num, len(prompt)): the same prompt for every sample
            out = model.generate(idx, self.chars, self.temperature, self.top_k, generator=g)
        finally:
            model.train(was_training)
        return [self.prompt + self.vocab.decode(row[len(prompt) :]) for row in out]

    def wandb_loggers(self, trainer: L.Trainer) -> list[WandbLogger]:
        return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)] if trainer.is_global_zero else []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = self.wandb_loggers(trainer)
        if not loggers or self.num < 1 or self.chars < 1:
            return
        samples = self.sample(pl_module.model, pl_module.device)
        self.rows += [[trainer.current_epoch, trainer.global_step, i, s] for i, s in enumerate(samples)]
        for logger in loggers:
            logger.log_table(
                key="samples", columns=list(COLUMNS), data=[list(r) for r in self.rows], step=trainer.global_step
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self.num < 1 or self.chars < 1:
            return
        last = [r for r in self.rows if r[1] == trainer.global_step]  # sampled at this step already
        samples = [r[3] for r in last] if last else self.sample(pl_module.model, pl_module.device)
        text = "\n\n".join(
            f"--- sample {i} (seed {self.seed}, temperature {self.temperature}) ---\n{s.strip()}"
            for i, s in enumerate(samples)
        )
        print(f"\nText sampled from the model:\n{text}\n")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "samples.txt").write_text(text + "\n")
