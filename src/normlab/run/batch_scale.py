"""What a run's scale means for the optimizer and for the norm.

The axis of the GroupNorm paper (Wu & He 2018, Fig. 1) is images per device: with 8 GPUs at 2
images each, BatchNorm normalizes over 2 images while the optimizer averages the gradient over
16. So ``data.batch`` is images per device; the global batch is ``data.batch`` x devices x
nodes (the world size), and with ``task.optim.lr_scaling=linear`` the learning rate follows the
global batch (Goyal et al. 2017): ``lr = task.optim.lr x global_batch / task.optim.base_batch``.

``scale_of`` derives these numbers and how many images a norm's batch statistics cover; every
run logs them in one line, and writes them to summary.json (``scale``) and to the W&B config.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from normlab.norms.contract import declared
from normlab.norms.ghost_batch import GhostBatchNorm
from normlab.norms.registry import norm_class
from normlab.norms.sync_batch import SyncBatchNorm
from normlab.tasks.optim import scaled_lr


def norm_images(norm: dict, batch: int, world_size: int, device_type: str) -> int | None:
    """Over how many images a norm's batch statistics go (None: it uses no batch statistics)."""
    cls = norm_class(norm["name"])
    if not declared(cls, "batch_dependent"):
        return None
    if cls is SyncBatchNorm and world_size > 1 and device_type != "cpu":  # synced: see norms/sync_batch.py
        return batch * world_size
    if cls is GhostBatchNorm:
        return min(norm.get("virtual_batch", 16), batch)  # 16: the layer's default
    return batch


def scale_of(cfg: DictConfig, world_size: int, device_type: str) -> dict:
    optim = OmegaConf.to_container(cfg.task.optim, resolve=True)
    batch = cfg.data.batch
    norm = OmegaConf.to_container(cfg.norm, resolve=True)
    return {
        "world_size": world_size,
        "batch_per_device": batch,
        "global_batch": batch * world_size,
        "lr_scaling": optim.get("lr_scaling", "none"),
        "base_lr": optim["lr"],
        "base_batch": optim.get("base_batch"),
        "lr": scaled_lr(optim, batch * world_size),
        "norm_images": norm_images(norm, batch, world_size, device_type),
    }


def describe(scale: dict, norm: str) -> tuple[str, str | None]:
    """The run's scale in one line, and a warning when ``sync_batch`` cannot sync."""
    n, b, g = scale["world_size"], scale["batch_per_device"], scale["global_batch"]
    line = f"scale: {n} device{'s' * (n > 1)} x {b} images = global batch {g}; "
    if scale["lr_scaling"] == "linear":
        line += (
            f"lr {scale['base_lr']:g} x {g} / {scale['base_batch']} = {scale['lr']:g} (task.optim.lr_scaling=linear)"
        )
    else:
        line += f"lr {scale['lr']:g} (task.optim.lr_scaling={scale['lr_scaling']})"
    if scale["norm_images"] is not None:
        line += f"; norm={norm} normalizes over {scale['norm_images']} images"
        line += " of all devices" if scale["norm_images"] > b else " at a time" if n == 1 else " per device"
    warning = None
    if norm == "sync_batch" and scale["norm_images"] == b:
        why = (
            "a single process has no other devices to sync with"
            if n == 1
            else "torch's SyncBatchNorm needs CUDA tensors, and these processes run on CPU (gloo)"
        )
        warning = (
            f"norm=sync_batch falls back to BatchNorm: {why}, so each device normalizes over its own {b} "
            f"images, as norm=batch does"
        )
    return line, warning
