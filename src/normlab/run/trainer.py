"""The Lightning Trainer of a run: its callbacks, loggers and plugins, from the config."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from normlab.callbacks import (
    AtomicCheckpointIO,
    EpochAverages,
    RanksInSync,
    ResumeState,
    Throughput,
    several_processes,
    sync_plugin,
)
from normlab.errors import ConfigError
from normlab.norms import canonical, norm_class
from normlab.norms.contract import declared

# Keys of conf/trainer/*.yaml that are normlab's own, not Lightning Trainer arguments.
NORMLAB_TRAINER_KEYS = ("channels_last", "compile", "keep_freed_memory")


def has_work(name: str, cfg: DictConfig, norm, trainer: dict, loggers) -> bool:
    """Whether an entry of conf/callbacks/ has work in this run: Lightning calls every callback at
    every hook of every step (about 100 Python calls per callback and step, measured 2026-11-23).
    Entries not named here are built whenever the config holds them."""
    return {
        "lr_monitor": bool(loggers),
        "progress_bar": trainer.get("enable_progress_bar", True),
        "checkpoints": trainer.get("enable_checkpointing", True),
        "batch_stats": cfg.task.name == "classify" and declared(norm, "batch_dependent"),
        "mixing_weights": declared(norm, "mixing_weights"),
    }.get(name, True)


def run_callbacks(norm, trainer: dict) -> list:
    """What every run has, not a choice of conf/callbacks/: its state for resume= and summary.json,
    the part of a norm's method that is a callback (bln's epoch averages, as its authors), and
    under DDP the check that the ranks still hold the same weights."""
    callbacks = [Throughput(), ResumeState()]
    if declared(norm, "start_epoch"):
        callbacks.append(EpochAverages())
    if several_processes(trainer):
        callbacks.append(RanksInSync())
    return callbacks


def configured_callbacks(cfg: DictConfig, norm, trainer: dict, loggers, run_dir: Path) -> list:
    """The entries of ``cfg.callbacks`` (conf/callbacks/) that have work in this run, built from their ``_target_``."""
    built = []
    for name, entry in (cfg.get("callbacks") or {}).items():
        if entry is None or not has_work(name, cfg, norm, trainer, loggers):
            continue
        extra = {"run_dir": run_dir} if "run_dir" in entry else {}
        try:
            callback = instantiate(entry, **extra)
        except InstantiationException as err:
            reason = " ".join(str(err).split())
            raise ConfigError(
                f"callbacks.{name} could not be built: {reason} Fix: correct callbacks.{name} "
                f"(its _target_ and arguments), or drop it: ~callbacks.{name}"
            ) from None
        built += callback if isinstance(callback, list) else [callback]
    return built


def build_trainer(cfg: DictConfig, run_dir: Path, loggers) -> L.Trainer:
    kwargs = {
        k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if k not in NORMLAB_TRAINER_KEYS
    }
    norm = norm_class(cfg.norm.name)
    callbacks = run_callbacks(norm, kwargs) + configured_callbacks(cfg, norm, kwargs, loggers, run_dir)
    # norm=sync_batch on GPUs: Lightning's DDP converts the layers to synced ones for training.
    plugins = [p for p in [sync_plugin(canonical(cfg.norm.name), kwargs.get("accelerator"))] if p is not None]
    try:
        return L.Trainer(
            **kwargs,
            logger=loggers or False,
            callbacks=callbacks,
            default_root_dir=str(run_dir),
            use_distributed_sampler=False,  # TensorBatches shards by rank itself
            plugins=[AtomicCheckpointIO(), *plugins],
        )
    except (ValueError, MisconfigurationException) as err:  # a value Lightning refuses (precision, devices, ...)
        raise ConfigError(
            f"the trainer config is not valid: {' '.join(str(err).split())} Fix: correct that trainer.* value."
        ) from None
