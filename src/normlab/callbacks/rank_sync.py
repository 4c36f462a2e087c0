"""Check that DDP kept the ranks' weights identical: a fingerprint per rank at the end of fit."""

from __future__ import annotations

import hashlib
import logging

import lightning as L
import torch

log = logging.getLogger(__name__)


def several_processes(trainer: dict) -> bool:
    """Whether a run may train on more than one process, from its trainer config: where
    ``RanksInSync`` has work.

    With one process there are no other ranks to compare and the callback does nothing, but
    Lightning still calls every hook of every callback at every step. Lightning runs one process
    per device on each of ``num_nodes`` nodes; one device on one node is one process, whatever the
    strategy (``strategy=ddp`` with ``devices=1`` too). ``devices=auto`` or ``-1`` can mean all of a
    machine's GPUs, so those count as several: there the callback is kept, and does nothing if it
    turns out to be one.
    """
    if int(trainer.get("num_nodes") or 1) > 1:
        return True
    devices = trainer.get("devices", "auto")
    if devices is None or str(devices).strip() in ("auto", "-1"):
        return True
    if isinstance(devices, str):  # "2" is a count, "0,1" or "1," a list of device indices
        devices = [d for d in devices.split(",") if d.strip()] if "," in devices else int(devices)
    return (len(devices) if isinstance(devices, (list, tuple)) else int(devices)) > 1


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
