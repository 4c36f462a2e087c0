"""The Lightning Trainer of a run: its callbacks, loggers and plugins, from the config."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

from normlab.callbacks import (
    AtomicCheckpointIO,
    BatchStatDiagnostics,
    DivergenceGuard,
    EpochAverages,
    MixingWeights,
    PreciseBN,
    RanksInSync,
    ResumeState,
    Throughput,
    checkpoint_callbacks,
    several_processes,
    sync_plugin,
)
from normlab.errors import ConfigError
from normlab.norms import canonical, norm_class
from normlab.norms.contract import declared

# Keys of conf/trainer/*.yaml that are normlab's own, not Lightning Trainer arguments.
NORMLAB_TRAINER_KEYS = ("channels_last", "compile", "keep_freed_memory")


def build_trainer(cfg: DictConfig, run_dir: Path, loggers) -> L.Trainer:
    kwargs = {
        k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if k not in NORMLAB_TRAINER_KEYS
    }
    # The loss is checked for NaN/inf on the host only as often as it is logged.
    callbacks = [Throughput(), ResumeState(), DivergenceGuard(kwargs.get("log_every_n_steps") or 50)]
    # Callbacks only where they have work: Lightning calls every callback at every hook of
    # every step (about 100 Python calls per callback and step, measured 2026-11-23).
    norm = norm_class(cfg.norm.name)
    if declared(norm, "mixing_weights"):
        callbacks.append(MixingWeights())  # what switchable / batch_instance layers learned, per epoch
    if declared(norm, "start_epoch"):
        callbacks.append(EpochAverages())  # bln_paper: running averages over one epoch, as its authors
    if several_processes(kwargs):
        callbacks.append(RanksInSync())  # under DDP: do the ranks still hold the same weights?
    if (cfg.get("precise_bn") or {}).get("enabled", False):
        callbacks.append(PreciseBN(cfg.precise_bn.get("batches", 100)))
    diagnostics = cfg.task.get("diagnostics") or {}
    if diagnostics.get("batch_stats", False) and declared(norm, "batch_dependent"):
        callbacks.append(BatchStatDiagnostics(diagnostics.get("precise_bn_batches", 200)))
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if kwargs.get("enable_progress_bar", True):
        # Redrawn as often as metrics are logged, not at every step: each redraw reads the logged
        # values (a host sync on a GPU) and cost 2-3 ms of Python per step on a CPU (measured
        # 2026-11-23, ResNet-20 at batch 2, cProfile), more when W&B captures the console.
        callbacks.append(TQDMProgressBar(refresh_rate=kwargs.get("log_every_n_steps") or 50))
    if kwargs.get("enable_checkpointing", True):
        every = (cfg.get("checkpoint") or {}).get("every_n_steps") or 0
        callbacks += checkpoint_callbacks(run_dir, cfg.task.monitor, cfg.task.monitor_mode, every)
    # norm=sync_batch on GPUs: Lightning's DDP converts the layers to synced ones for training.
    plugins = [p for p in [sync_plugin(canonical(cfg.norm.name), kwargs.get("accelerator"))] if p is not None]
    try:
        return L.Trainer(
            **kwargs, logger=loggers or False, callbacks=callbacks, default_root_dir=str(run_dir),
            use_distributed_sampler=False,  # TensorBatches shards by rank itself
            plugins=[AtomicCheckpointIO(), *plugins],
        )
    except (ValueError, MisconfigurationException) as err:  # a value Lightning refuses (precision, devices, ...)
        raise ConfigError(f"the trainer config is not valid: {' '.join(str(err).split())} "
                          f"Fix: correct that trainer.* value.") from None
