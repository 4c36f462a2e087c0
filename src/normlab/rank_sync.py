"""Check that DDP kept the ranks' weights identical: a fingerprint per rank at the end of fit."""

from __future__ import annotations

import hashlib
import logging

import lightning as L
import torch

log = logging.getLogger(__name__)


class RanksInSync(L.Callback):
    """At the end of fit, a fingerprint of every rank's parameters, gathered from all ranks.

    DDP averages the gradients, so every rank takes the same step and the parameters stay
    identical, bit for bit; a layer or a setting that breaks this would make the ranks train
    different models. Buffers are left out: DDP copies rank 0's to the others before every
    forward, and each rank's BatchNorm then updates its running statistics with its own images.
    """

    def __init__(self):
        self.fingerprints: list[str] | None = None

    def on_train_end(self, trainer, pl_module):
        if trainer.world_size < 2:
            return
        digest = hashlib.sha256()
        for p in pl_module.parameters():
            digest.update(p.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
        mine = torch.tensor(int.from_bytes(digest.digest()[:7], "big"), device=pl_module.device)
        gathered = trainer.strategy.all_gather(mine).reshape(-1)
        self.fingerprints = [f"{int(v):014x}" for v in gathered.tolist()]
        if len(set(self.fingerprints)) > 1:
            log.error("the %d ranks hold different weights after training: %s", trainer.world_size, self.fingerprints)

    def record(self) -> dict:
        if self.fingerprints is None:
            return {}
        return {"weights_fingerprints": self.fingerprints, "weights_identical": len(set(self.fingerprints)) == 1}
