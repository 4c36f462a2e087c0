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
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from normlab.callbacks import ResumeState, Throughput
from normlab.checkpoints import AtomicCheckpointIO, checkpoint_callbacks
from normlab.diagnostics import BatchStatDiagnostics
from normlab.divergence import Diverged, DivergenceGuard
from normlab.errors import ConfigError
from normlab.loggers import build_loggers, finish_wandb, wandb_run_id
from normlab.norm_callbacks import MixingWeights, PreciseBN
from normlab.resume import merge_csv, resume_point, set_aside_csv
from normlab.summary import RunSummary
from normlab.tasks import build_task
from normlab.validate import check_config

log = logging.getLogger(__name__)

# Keys of conf/trainer/*.yaml that are normlab's own, not Lightning Trainer arguments.
NORMLAB_TRAINER_KEYS = ("channels_last", "compile")


def build_trainer(cfg: DictConfig, run_dir: Path, loggers) -> L.Trainer:
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if k not in NORMLAB_TRAINER_KEYS}
    # The loss is checked for NaN/inf on the host only as often as it is logged.
    callbacks = [Throughput(), ResumeState(), DivergenceGuard(kwargs.get("log_every_n_steps") or 50)]
    callbacks.append(MixingWeights())  # what switchable / batch_instance layers learned, per epoch
    if (cfg.get("precise_bn") or {}).get("enabled", False):
        callbacks.append(PreciseBN(cfg.precise_bn.get("batches", 100)))
    diagnostics = cfg.task.get("diagnostics") or {}
    if diagnostics.get("batch_stats", False):
        callbacks.append(BatchStatDiagnostics(diagnostics.get("precise_bn_batches", 200)))
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if kwargs.get("enable_checkpointing", True):
        every = (cfg.get("checkpoint") or {}).get("every_n_steps") or 0
        callbacks += checkpoint_callbacks(run_dir, cfg.task.monitor, cfg.task.monitor_mode, every)
    try:
        return L.Trainer(
            **kwargs, logger=loggers or False, callbacks=callbacks, default_root_dir=str(run_dir),
            use_distributed_sampler=False,  # TensorBatches shards by rank itself
            plugins=[AtomicCheckpointIO()],
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


def train(cfg: DictConfig) -> dict:
    """Train and test one configuration; return its summary (also written to summary.json)."""
    run_dir = Path(cfg.get("resume") or cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    # Before the summary is rewritten: a resume that cannot work leaves the run as it was.
    resume = resume_point(run_dir, config) if cfg.get("resume") else None
    summary = RunSummary(run_dir, config, resume.previous if resume else None)
    status, error, metrics, extra, trainer, csv_aside = "failed", None, {}, {}, None, None
    try:
        check_config(cfg)
        if cfg.get("threads"):
            torch.set_num_threads(cfg.threads)  # parallel jobs on one machine: one or two threads each
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        logger_config = config
        if resume:  # the same W&B run, and the CSV rows written before the kill kept
            logger_config = OmegaConf.to_container(cfg, resolve=True)
            if (logger_config.get("logger") or {}).get("wandb") is not None and resume.wandb_id:
                logger_config["logger"]["wandb"]["id"] = resume.wandb_id
            csv_aside = set_aside_csv(run_dir)
        loggers = build_loggers(logger_config, run_dir)
        if run_id := wandb_run_id():
            summary.note(wandb_id=run_id)  # now, so that a run killed later can still be resumed into it
        trainer = build_trainer(cfg, run_dir, loggers)
        module, data = build_task(cfg, trainer.world_size)
        if cfg.trainer.get("compile", False):
            module.model = torch.compile(module.model)
        trainer.fit(module, datamodule=data, ckpt_path=str(resume.ckpt_path) if resume else cfg.get("ckpt_path"))
        metrics = final_metrics(trainer)  # train/ and val/ of the last epoch; test replaces them
        trainer.test(module, datamodule=data, verbose=False)
        metrics.update(final_metrics(trainer))
        extra = {"world_size": trainer.world_size, "global_batch": cfg.data.batch * trainer.world_size,
                 "epochs": trainer.current_epoch, "steps": trainer.global_step}
        status = "completed"
    except Diverged as err:
        status, error, metrics = "diverged", err, final_metrics(trainer)
        extra = {"diverged_step": err.step, "steps": trainer.global_step}
        raise
    except BaseException as err:
        error = err
        raise
    finally:
        merge_csv(run_dir, csv_aside)
        # W&B first, so the summary can say where the W&B run went.
        wandb_dir = finish_wandb(failed=status != "completed")
        result = summary.finish(status, metrics, error, wandb_dir=wandb_dir, **extra)
    return result
