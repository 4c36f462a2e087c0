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
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from normlab.callbacks import Throughput
from normlab.loggers import build_loggers, finish_wandb
from normlab.summary import RunSummary
from normlab.tasks import build_task
from normlab.validate import check_config

log = logging.getLogger(__name__)

# Keys of conf/trainer/*.yaml that are normlab's own, not Lightning Trainer arguments.
NORMLAB_TRAINER_KEYS = ("channels_last", "compile")


def build_trainer(cfg: DictConfig, run_dir: Path, loggers) -> L.Trainer:
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if k not in NORMLAB_TRAINER_KEYS}
    callbacks = [Throughput()]
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if kwargs.get("enable_checkpointing", True):
        callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=cfg.task.monitor,
                                         mode=cfg.task.monitor_mode, save_last=True))
    return L.Trainer(
        **kwargs, logger=loggers or False, callbacks=callbacks, default_root_dir=str(run_dir),
        use_distributed_sampler=False,  # TensorBatches shards by rank itself
    )


def final_metrics(trainer: L.Trainer) -> dict:
    out = {}
    for k, v in trainer.callback_metrics.items():
        value = float(v)
        out[k] = value if math.isfinite(value) else str(value)
    return out


def train(cfg: DictConfig) -> dict:
    """Train and test one configuration; return its summary (also written to summary.json)."""
    run_dir = Path(cfg.paths.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    summary = RunSummary(run_dir, config)
    status, error, metrics, extra = "failed", None, {}, {}
    try:
        check_config(cfg)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        loggers = build_loggers(config, run_dir)
        trainer = build_trainer(cfg, run_dir, loggers)
        module, data = build_task(cfg, trainer.world_size)
        if cfg.trainer.get("compile", False):
            module.model = torch.compile(module.model)
        trainer.fit(module, datamodule=data, ckpt_path=cfg.get("ckpt_path"))
        metrics = final_metrics(trainer)  # train/ and val/ of the last epoch; test replaces them
        trainer.test(module, datamodule=data, verbose=False)
        metrics.update(final_metrics(trainer))
        extra = {"world_size": trainer.world_size, "global_batch": cfg.data.batch * trainer.world_size,
                 "epochs": trainer.current_epoch, "steps": trainer.global_step}
        status = "completed"
    except BaseException as err:
        error = err
        raise
    finally:
        # W&B first, so the summary can say where the W&B run went.
        wandb_dir = finish_wandb(failed=status != "completed")
        result = summary.finish(status, metrics, error, wandb_dir=wandb_dir, **extra)
    return result
