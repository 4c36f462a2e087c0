"""W&B (offline unless told otherwise), CSV and TensorBoard loggers for a run.

Offline W&B runs stay in ``<run_dir>/wandb/``; ``wandb sync <run_dir>/wandb/offline-run-*``
uploads them later. Offline mode never asks for a login, so unattended sweeps never block.
TensorBoard writes ``<run_dir>/tensorboard/``; ``tensorboard --logdir logs/`` shows every run, and its
HParams view the grouping keys (``flat_config``) beside the final metrics (``log_final_hparams``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only

from normlab.errors import ConfigError

log = logging.getLogger(__name__)

# What the runs table sorts by: the best epoch ("min"/"max") and the final one ("last"), as
# ``<key>.min`` and ``<key>.last`` in the run's summary. Every curve's x axis is Lightning's own
# step metric, trainer/global_step (WandbLogger defines it when it opens the run).
SUMMARIES = {"val/err": "min,last", "val/loss": "min,last", "val/bpc": "min,last", "val/style_drop": "max,last"}
# Keys of the config that do not change what a run computes: left out of the name's hash.
NOT_THE_RUN = ("paths", "logger", "resume", "ckpt_path", "threads", "hydra")


def config_hash(config: dict) -> str:
    """Six hex digits of everything a run computes from: two runs differ in it if their configs do."""
    kept = {k: v for k, v in config.items() if k not in NOT_THE_RUN}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:6]


def run_name(config: dict) -> str:
    """``<experiment>/<norm>-b<batch>-<model>-s<seed>-<hash>``: readable, and unique across the arms of
    a sweep that share norm, batch, model and seed (norm.num_groups, model.ws, lr, ...) by the hash."""
    norm = config["norm"]
    label = norm["name"] + (f"-g{norm['num_groups']}" if norm.get("num_groups") and not norm.get("group_size") else "")
    label += "-ws" if config["model"].get("ws") else ""
    return (
        f"{config.get('name') or 'default'}/{label}-b{config['data']['batch']}-{config['model']['name']}"
        f"-s{config['seed']}-{config_hash(config)}"
    )


def flat_config(config: dict) -> dict:
    """The keys a runs table is grouped and filtered by, at the top level beside the nested config."""
    optim = (config.get("task") or {}).get("optim") or {}
    return {
        "experiment": config.get("name") or "default",
        "task_name": config["task"]["name"],
        "norm_name": config["norm"]["name"],
        "model_name": config["model"]["name"],
        "batch_per_device": config["data"]["batch"],
        "seed": config["seed"],
        "base_lr": optim.get("lr"),
    }


@rank_zero_only
def define_metrics(logger) -> None:
    """Summaries of the validation curves: the best and the final value of each (see SUMMARIES)."""
    for key, summary in SUMMARIES.items():
        logger.experiment.define_metric(key, summary=summary)


def build_loggers(config: dict, run_dir: Path) -> list[Logger]:
    cfg = config.get("logger") or {}
    loggers: list[Logger] = []
    if cfg.get("csv") is not None:
        loggers.append(CSVLogger(str(run_dir), name="csv", version=""))
    if cfg.get("tensorboard") is not None:
        loggers.append(tensorboard_logger(run_dir))
    wb = cfg.get("wandb")
    if wb is not None:
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        tags = [
            f"norm={config['norm']['name']}",
            f"batch={config['data']['batch']}",
            f"model={config['model']['name']}",
            f"seed={config['seed']}",
            f"task={config['task']['name']}",
        ]
        logger = WandbLogger(
            project=wb["project"],
            entity=wb.get("entity"),
            group=wb.get("group"),
            name=run_name(config),
            tags=tags + list(wb.get("tags") or []),
            save_dir=str(run_dir),
            mode=wb.get("mode", "offline"),
            id=wb.get("id"),
            resume="allow" if wb.get("id") else None,
        )
        logger.log_hyperparams({**config, **flat_config(config)})
        define_metrics(logger)
        loggers.append(logger)
    return loggers


def tensorboard_logger(run_dir: Path) -> Logger:
    """Lightning's TensorBoardLogger, with no placeholder hp_metric: the real metrics come at the end."""
    from lightning.pytorch.loggers import TensorBoardLogger

    try:
        import tensorboard  # noqa: F401  (Lightning falls back to tensorboardX, which we do not ship)
    except ImportError:
        raise ConfigError(
            "logger=tensorboard needs the tensorboard package. Fix: pip install 'normlab[tensorboard]' "
            "(or pip install tensorboard), or pick logger=csv / logger=wandb"
        ) from None
    return TensorBoardLogger(str(run_dir), name="tensorboard", version="", default_hp_metric=False)


def log_final_hparams(loggers: list[Logger], config: dict, scale: dict, metrics: dict) -> None:
    """The HParams entry of a TensorBoard run: the grouping keys W&B gets too, and the run's final metrics."""
    from lightning.pytorch.loggers import TensorBoardLogger

    params = {
        **flat_config(config),
        "global_batch": scale.get("global_batch"),
        "lr": scale.get("lr"),
        "world_size": scale.get("world_size"),
    }
    numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, numbers)


def finish_wandb(failed: bool) -> str | None:
    """Close the W&B run, marked failed if the job raised, so the next job of a sweep gets its own."""
    try:
        import wandb
    except ImportError:
        return None
    if wandb.run is None:
        return None
    run_dir = wandb.run.dir
    offline = wandb.run.settings.mode == "offline" if hasattr(wandb.run, "settings") else True
    wandb.finish(exit_code=1 if failed else 0)
    if offline:
        log.info("W&B offline run in %s; upload it with: wandb sync %s", Path(run_dir).parent, Path(run_dir).parent)
    return str(Path(run_dir).parent)


def wandb_run_id() -> str | None:
    """The id of the open W&B run: what ``resume=<run dir>`` needs to continue it."""
    try:
        import wandb
    except ImportError:
        return None
    return wandb.run.id if wandb.run is not None else None
