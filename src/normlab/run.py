"""One training run, from a composed config to a run directory.

config -> loggers and Trainer -> task (model, data) -> fit -> test -> summary.json (and W&B).
``train.py`` is the Hydra entry point around ``train``; tests call ``train`` directly with a
config from ``hydra.compose``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

from normlab import ddp
from normlab.callbacks import ResumeState, Throughput
from normlab.checkpoints import AtomicCheckpointIO, checkpoint_callbacks
from normlab.diagnostics import BatchStatDiagnostics
from normlab.divergence import Diverged, DivergenceGuard
from normlab.errors import ConfigError
from normlab.host_memory import keep_freed_memory_if_asked
from normlab.layer_sync import sync_plugin
from normlab.loggers import build_loggers, finish_wandb, wandb_run_id
from normlab.norm_callbacks import MixingWeights, PreciseBN
from normlab.norms import norm_class
from normlab.norms.registry import canonical
from normlab.rank_sync import RanksInSync, several_processes
from normlab.resume import merge_csv, resume_point, set_aside_csv
from normlab.scale import describe, scale_of
from normlab.summary import RunSummary
from normlab.tasks import build_task
from normlab.validate import check_config

log = logging.getLogger(__name__)

# Keys of conf/trainer/*.yaml that are normlab's own, not Lightning Trainer arguments.
NORMLAB_TRAINER_KEYS = ("channels_last", "compile", "keep_freed_memory")


def build_trainer(cfg: DictConfig, run_dir: Path, loggers) -> L.Trainer:
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if k not in NORMLAB_TRAINER_KEYS}
    # The loss is checked for NaN/inf on the host only as often as it is logged.
    callbacks = [Throughput(), ResumeState(), DivergenceGuard(kwargs.get("log_every_n_steps") or 50)]
    # Callbacks only where they have work: Lightning calls every callback at every hook of
    # every step (about 100 Python calls per callback and step, measured 2026-11-23).
    norm = norm_class(cfg.norm.name)
    if callable(getattr(norm, "mixing_weights", None)):
        callbacks.append(MixingWeights())  # what switchable / batch_instance layers learned, per epoch
    if several_processes(kwargs):
        callbacks.append(RanksInSync())  # under DDP: do the ranks still hold the same weights?
    if (cfg.get("precise_bn") or {}).get("enabled", False):
        callbacks.append(PreciseBN(cfg.precise_bn.get("batches", 100)))
    diagnostics = cfg.task.get("diagnostics") or {}
    if diagnostics.get("batch_stats", False) and getattr(norm, "batch_dependent", False):
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


def final_metrics(trainer: L.Trainer) -> dict:
    out = {}
    for k, v in trainer.callback_metrics.items():
        value = float(v)
        out[k] = value if math.isfinite(value) else str(value)
    return out


def record_scale(cfg: DictConfig, trainer: L.Trainer, summary: RunSummary, loggers, rank_zero: bool) -> dict:
    """Devices, global batch, learning rate and the norm's images: in the log, summary.json and W&B."""
    device_type = trainer.strategy.root_device.type
    scale = scale_of(cfg, trainer.world_size, device_type)
    line, warning = describe(scale, canonical(cfg.norm.name))
    if rank_zero:
        log.info(line)
        if warning:
            log.warning(warning)
    summary.note(scale=scale)
    for logger in loggers:
        logger.log_hyperparams({"scale": scale})  # rank 0 only (Lightning's loggers)
    return scale


def train(cfg: DictConfig) -> dict:
    """Train and test one configuration; return its summary (also written to summary.json)."""
    run_dir = Path(cfg.get("resume") or cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    # Before the summary is rewritten: a resume that cannot work leaves the run as it was.
    resume = resume_point(run_dir, config) if cfg.get("resume") else None
    rank_zero = ddp.is_rank_zero()  # under DDP every rank trains, and rank 0 alone writes the run
    summary = RunSummary(run_dir, config, resume.previous if resume else None, write=rank_zero)
    status, error, metrics, extra, trainer, csv_aside = "failed", None, {}, {}, None, None
    try:
        check_config(cfg)
        if cfg.get("threads"):
            torch.set_num_threads(cfg.threads)  # parallel jobs on one machine: one or two threads each
        keep_freed_memory_if_asked(cfg)  # no page faults for each step's activations (host_memory.py)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        logger_config = config
        if resume:  # the same W&B run, and the CSV rows written before the kill kept
            logger_config = OmegaConf.to_container(cfg, resolve=True)
            if (logger_config.get("logger") or {}).get("wandb") is not None and resume.wandb_id:
                logger_config["logger"]["wandb"]["id"] = resume.wandb_id
            csv_aside = set_aside_csv(run_dir) if rank_zero else None
        loggers = build_loggers(logger_config, run_dir)
        if run_id := wandb_run_id():
            summary.note(wandb_id=run_id)  # now, so that a run killed later can still be resumed into it
        trainer = build_trainer(cfg, run_dir, loggers)
        ddp.check_launch(trainer, str(cfg.trainer.get("strategy")))
        scale = record_scale(cfg, trainer, summary, loggers, rank_zero)
        module, data = build_task(cfg, trainer.world_size)
        if cfg.trainer.get("compile", False):
            module.model = torch.compile(module.model)
        with ddp.ranks(trainer, config, cfg.get("threads")):  # the other DDP ranks start in fit
            trainer.fit(module, datamodule=data, ckpt_path=str(resume.ckpt_path) if resume else cfg.get("ckpt_path"))
            metrics = final_metrics(trainer)  # train/ and val/ of the last epoch; test replaces them
            trainer.test(module, datamodule=data, verbose=False)
        metrics.update(final_metrics(trainer))
        sync = next((c.record() for c in trainer.callbacks if isinstance(c, RanksInSync)), {})
        extra = {"world_size": trainer.world_size, "global_batch": scale["global_batch"],
                 "epochs": trainer.current_epoch, "steps": trainer.global_step, **({"ddp": sync} if sync else {})}
        status = "completed"
    except Diverged as err:
        status, error, metrics = "diverged", err, final_metrics(trainer)
        extra = {"diverged_step": err.step, "steps": trainer.global_step}
        raise
    except BaseException as err:
        error = err
        # Ctrl-C: Lightning stops gracefully and exits (a SystemExit raised while handling the
        # KeyboardInterrupt); resume=<run dir> continues the run.
        if isinstance(err, KeyboardInterrupt) or isinstance(err.__context__, KeyboardInterrupt):
            status = "interrupted"
        raise
    finally:
        merge_csv(run_dir, csv_aside)
        # W&B first, so the summary can say where the W&B run went.
        wandb_dir = finish_wandb(failed=status != "completed")
        result = summary.finish(status, metrics, error, wandb_dir=wandb_dir, **extra)
    return result
