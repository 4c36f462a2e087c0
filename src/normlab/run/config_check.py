"""Check a composed config before anything is built, so a typo costs a second, not a run.

Each check raises ``ConfigError`` with one line: what is wrong and the fix. What only the data
or the model can tell is checked where they are built, still before the first step: a subset
larger than the training set (``data/module.py``), GroupNorm groups that do not divide a layer
(``models/widths.py``), a value Lightning's Trainer refuses (``run/trainer.py``).
"""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from normlab.errors import ConfigError, unknown_name, unknown_option
from normlab.models import model_spec
from normlab.norms.contract import declared
from normlab.norms.registry import canonical, check_knobs, check_supports, name_and_knobs, norm_class
from normlab.run.resume import checkpoint_damage
from normlab.run.trainer import NORMLAB_TRAINER_KEYS
from normlab.tasks import task_of
from normlab.tasks.optim import SCHEDULES, build_optimizer, scaled_lr

# Tasks where one image per batch with a batch norm is the published setting, not worth a warning:
# in training it normalizes each image over its pixels, i.e. instance norm (Ulyanov et al. 2016 on
# fast style transfer, trained with one image per batch).
BATCH_OF_ONE_TASKS = ("style",)
LOGGERS = ("wandb", "csv", "tensorboard")
WANDB_MODES = ("offline", "online", "disabled")

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> None:
    check_missing(cfg)
    norm = check_names(cfg)
    check_batches(cfg, norm)
    check_sizes(cfg, norm)
    check_optim(cfg)
    check_trainer(cfg)
    check_logger(cfg)
    check_run(cfg)


def check_missing(cfg: DictConfig) -> None:
    """``???`` in a config means "you must say": say which key, not OmegaConf's traceback."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra"))
    if missing:
        raise ConfigError(
            f"{missing[0]} has no value (it is ??? in the config of {missing[0].split('.')[0]}). "
            f"Fix: add {missing[0]}=<value> to the command."
        )


def check_names(cfg: DictConfig) -> str:
    """Task, model, norm and dataset exist, and the norm means something for the model's layout."""
    task = task_of(cfg.task.name)
    layout = model_spec(cfg.model.name).layout
    name, knobs = name_and_knobs(OmegaConf.to_container(cfg.norm, resolve=True))
    canonical(name)
    check_knobs(name, knobs)
    check_supports(name, layout)
    if cfg.data.name not in task.datasets:
        raise unknown_name(f"dataset for task={cfg.task.name}", cfg.data.name, task.datasets, "data")
    return canonical(name)


def _count(value, key: str, what: str, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{key}={value} is not {what}. Fix: set {key} to {least} or more.")


def check_batches(cfg: DictConfig, norm: str) -> None:
    """Batch sizes are counts, and a norm that uses the batch gets at least two samples."""
    batch = cfg.data.batch
    _count(batch, "data.batch", "a batch size")
    if cfg.data.get("eval_batch") is not None:
        _count(cfg.data.eval_batch, "data.eval_batch", "a batch size")
    if cfg.data.get("subset") is not None:
        _count(cfg.data.subset, "data.subset", "a number of training images")
    if not declared(norm_class(norm), "batch_dependent") or cfg.task.name in BATCH_OF_ONE_TASKS:
        return
    # One sample per batch still gives a batch norm every position of that sample (H x W pixels,
    # or T tokens): per-sample statistics, a setting of its own. Only a layer that then sees one
    # value per channel is refused, by the norm factory's check at the first step.
    if batch == 1 or (cfg.data.get("eval_batch") == 1 and cfg.norm.get("track_running_stats") is False):
        what = "training" if batch == 1 else "evaluation (track_running_stats=false)"
        over = "tokens, so it sees future tokens" if cfg.task.name == "lm" else "pixels"
        log.warning(
            "norm=%s at one sample per batch normalizes in %s with the statistics of each sample's own %s; "
            "a layer that sees one value per channel stops the run.",
            norm,
            what,
            over,
        )


def check_sizes(cfg: DictConfig, norm: str) -> None:
    """A norm with statistics per position (``one_input_size``: bln) needs the same image
    size in training and evaluation: refused before training, not at the first evaluation."""
    crop, eval_size = cfg.data.get("crop"), cfg.data.get("eval_size")
    if declared(norm_class(norm), "one_input_size") and crop and eval_size and crop != eval_size:
        raise ConfigError(
            f"norm={norm} keeps statistics per position, so it needs one input size, and this run "
            f"trains on {crop} px crops and evaluates at {eval_size} px. "
            f"Fix: set data.eval_size={crop}, or use norm=bln_pooled."
        )


def check_optim(cfg: DictConfig) -> None:
    """A positive learning rate, and an optimizer and schedule the task knows."""
    optim = OmegaConf.to_container(cfg.task.optim, resolve=True)
    lr = optim.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ConfigError(
            f"task.optim.lr={lr} is not a learning rate. Fix: set task.optim.lr to a positive number "
            f"(0.1 is usual for SGD, 1e-3 for AdamW)."
        )
    if optim.get("lr_scaling") == "linear":
        _count(optim.get("base_batch"), "task.optim.base_batch", "a batch size")
    scaled_lr(optim, cfg.data.batch)  # an unknown lr_scaling fails here, not at the first step
    warmup = optim.get("warmup", 0.0)
    if not isinstance(warmup, (int, float)) or not 0 <= warmup < 1:
        raise ConfigError(
            f"task.optim.warmup={warmup} is not a fraction of the training steps. "
            f"Fix: set task.optim.warmup between 0 and 1 (e.g. 0.05)."
        )
    schedule = optim.get("schedule", "cosine")
    if schedule not in SCHEDULES:
        raise ConfigError(
            f"task.optim.schedule={schedule} is not a schedule normlab knows. "
            f"Fix: set task.optim.schedule to one of {', '.join(SCHEDULES)}."
        )
    if schedule == "one_cycle" and not warmup > 0:
        raise ConfigError(
            "task.optim.schedule=one_cycle needs a rise: task.optim.warmup=0. "
            "Fix: set task.optim.warmup=0.3 (Smith & Topin's default), or use schedule=cosine."
        )
    try:
        build_optimizer([torch.zeros(1, requires_grad=True)], optim, lr)
    except ValueError as err:  # torch's own range checks: momentum, betas, weight decay
        raise ConfigError(f"task.optim is not valid: {err}. Fix: correct that value in task.optim.") from None


def check_trainer(cfg: DictConfig) -> None:
    """Trainer keys are Lightning Trainer arguments (or normlab's), and the run trains at least a step."""
    known = [p for p in inspect.signature(L.Trainer.__init__).parameters if p != "self"] + list(NORMLAB_TRAINER_KEYS)
    for key in cfg.trainer:
        if key not in known:
            raise unknown_option("trainer option", key, known, "trainer", "a Lightning Trainer argument")
    t = cfg.trainer
    max_steps = t.get("max_steps", -1)
    if max_steps not in (-1, None):
        _count(max_steps, "trainer.max_steps", "a number of steps (or -1 for no limit)")
    max_epochs = t.get("max_epochs")
    if max_epochs is not None and not (max_epochs == -1 and (max_steps or -1) > 0):
        _count(max_epochs, "trainer.max_epochs", "a number of epochs that trains anything")
    if t.get("log_every_n_steps") is not None:
        _count(t.log_every_n_steps, "trainer.log_every_n_steps", "a number of steps")
    if t.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        cpu = "trainer=ddp_cpu (DDP over CPU processes)" if "ddp" in str(t.get("strategy")) else "trainer=cpu"
        raise ConfigError(
            f"trainer.accelerator={t.accelerator}, but torch sees no GPU on this machine. "
            f"Fix: use {cpu} (or run on a machine with a CUDA GPU)."
        )


def check_logger(cfg: DictConfig) -> None:
    logger = cfg.get("logger") or {}
    for key in logger:
        if key not in LOGGERS:
            raise unknown_option("logger", key, LOGGERS, "logger", "logger=wandb, csv, tensorboard, many or none")
    wandb = logger.get("wandb")
    if wandb is not None and wandb.get("mode", "offline") not in WANDB_MODES:
        raise ConfigError(
            f"logger.wandb.mode={wandb.mode} is not a W&B mode. "
            f"Fix: set logger.wandb.mode to one of {', '.join(WANDB_MODES)}."
        )


def check_run(cfg: DictConfig) -> None:
    """Seed, threads, checkpoint interval and checkpoint path."""
    _count(cfg.seed, "seed", "a seed", least=0)
    if cfg.get("threads") is not None:
        _count(cfg.threads, "threads", "a number of CPU threads")
    every = (cfg.get("checkpoint") or {}).get("every_n_steps")
    if every is not None:
        _count(every, "checkpoint.every_n_steps", "a number of steps (0: only at the end of every epoch)", least=0)
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "last", "best") and not Path(ckpt).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt} is not a file. Fix: give the path of a .ckpt file, "
            f"or resume=<run dir> to continue a run where it stopped."
        )
    if ckpt not in (None, "last", "best") and (damage := checkpoint_damage(Path(ckpt))):
        raise ConfigError(
            f"ckpt_path={ckpt} cannot be loaded: {damage}. Fix: give an intact checkpoint "
            f"(best.ckpt or last.ckpt of the run), or start without ckpt_path."
        )
