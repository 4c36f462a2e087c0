"""The life of one training run, from a composed config to a run directory.

config check -> loggers and Trainer -> task (model, data) -> fit -> test -> summary.json (and W&B).
``train.py`` is the Hydra entry point around ``train``; tests call ``train`` directly with a
config from ``hydra.compose``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from normlab.callbacks import RanksInSync
from normlab.errors import ConfigError, Diverged
from normlab.norms import canonical
from normlab.run import ddp
from normlab.run.batch_scale import describe, scale_of
from normlab.run.config_check import check_config
from normlab.run.host_memory import keep_freed_memory_if_asked
from normlab.run.loggers import build_loggers, finish_wandb, log_final_hparams, wandb_run_id
from normlab.run.resume import merge_csv, resume_point, set_aside_csv, weights_misfit
from normlab.run.summary import RunSummary
from normlab.run.trainer import build_trainer
from normlab.tasks import build_task, lr_choice

log = logging.getLogger(__name__)


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
        # Rank 0 only (Lightning's loggers); the numbers a runs table groups by also at the top level.
        logger.log_hyperparams(
            {
                "scale": scale,
                "global_batch": scale["global_batch"],
                "lr": scale["lr"],
                "world_size": scale["world_size"],
            }
        )
    return scale


def start(cfg: DictConfig) -> None:
    """What a process does before it builds a task from ``cfg``: check it, set its threads, seed it."""
    check_config(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)  # parallel jobs on one machine: one or two threads each
    L.seed_everything(cfg.seed, workers=True, verbose=False)


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
        if lr_choice.apply(cfg):  # this arm's own rate: the config the run records is the one it trains with
            config = OmegaConf.to_container(cfg, resolve=True)
            summary.note(config=config)
        start(cfg)
        keep_freed_memory_if_asked(cfg)  # no page faults for each step's activations (host_memory.py)
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
        ckpt = resume.ckpt_path if resume else cfg.get("ckpt_path")
        if ckpt not in (None, "last", "best") and (misfit := weights_misfit(module, Path(ckpt), cfg.norm.name)):
            raise ConfigError(misfit)
        if cfg.trainer.get("compile", False):
            module.model = torch.compile(module.model)
        with ddp.ranks(trainer, config, cfg.get("threads")):  # the other DDP ranks start in fit
            trainer.fit(module, datamodule=data, ckpt_path=None if ckpt is None else str(ckpt))
            metrics = final_metrics(trainer)  # train/ and val/ of the last epoch; test replaces them
            trainer.test(module, datamodule=data, verbose=False)
        metrics.update(final_metrics(trainer))
        log_final_hparams(loggers, config, scale, metrics)
        sync = next((c.record() for c in trainer.callbacks if isinstance(c, RanksInSync)), {})
        extra = {
            "world_size": trainer.world_size,
            "global_batch": scale["global_batch"],
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            **({"ddp": sync} if sync else {}),
        }
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
