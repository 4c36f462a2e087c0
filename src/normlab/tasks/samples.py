"""Text sampled from the trained language model: the check a loss cannot replace.

At the end of training the model generates ``num`` continuations of ``prompt``, ``chars``
characters each, in eval mode with a fixed seed (so two runs with the same weights print the
same text). They are printed, written to ``samples.txt`` in the run directory and logged to
W&B as a table when a W&B logger is attached.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from normlab.data.vocab import CharVocab


class TextSamples(L.Callback):
    def __init__(self, vocab: CharVocab, out_dir: str, num: int = 3, chars: int = 300, prompt: str = "\n\n",
                 temperature: float = 0.8, top_k: int | None = None, seed: int = 0):
        self.vocab, self.out_dir, self.num, self.chars = vocab, Path(out_dir), num, chars
        self.prompt = prompt or "\n\n"  # generation needs context; instance norm needs two tokens
        self.temperature, self.top_k, self.seed = temperature, top_k, seed

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
        return [self.prompt + self.vocab.decode(row[len(prompt):]) for row in out]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self.num < 1 or self.chars < 1:
            return
        samples = self.sample(pl_module.model, pl_module.device)
        text = "\n\n".join(f"--- sample {i} (seed {self.seed}, temperature {self.temperature}) ---\n{s.strip()}"
                           for i, s in enumerate(samples))
        print(f"\nText sampled from the model:\n{text}\n")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "samples.txt").write_text(text + "\n")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text(key="samples", columns=["sample", "text"], data=[[i, s] for i, s in enumerate(samples)])
