"""W&B (offline unless told otherwise) and CSV loggers for a run.

Offline W&B runs stay in ``<run_dir>/wandb/``; ``wandb sync <run_dir>/wandb/offline-run-*``
uploads them later. Offline mode never asks for a login, so unattended sweeps never block.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger

log = logging.getLogger(__name__)


def run_name(config: dict) -> str:
    return f"{config['norm']['name']}-b{config['data']['batch']}-{config['model']['name']}-s{config['seed']}"


def build_loggers(config: dict, run_dir: Path) -> list[Logger]:
    cfg = config.get("logger") or {}
    loggers: list[Logger] = []
    if cfg.get("csv") is not None:
        loggers.append(CSVLogger(str(run_dir), name="csv", version=""))
    wb = cfg.get("wandb")
    if wb is not None:
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        tags = [f"norm={config['norm']['name']}", f"batch={config['data']['batch']}",
                f"model={config['model']['name']}", f"seed={config['seed']}", f"task={config['task']['name']}"]
        logger = WandbLogger(
            project=wb["project"], entity=wb.get("entity"), group=wb.get("group"), name=run_name(config),
            tags=tags + list(wb.get("tags") or []), save_dir=str(run_dir), mode=wb.get("mode", "offline"),
            id=wb.get("id"), resume="allow" if wb.get("id") else None,
        )
        logger.log_hyperparams(config)
        loggers.append(logger)
    return loggers


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
