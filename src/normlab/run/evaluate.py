"""Evaluate a trained checkpoint on the test split, without training: ``python eval.py ckpt_path=<ckpt>``.

The run's own config comes from its ``summary.json`` (the resolved config it trained with), or from
``.hydra/config.yaml`` when there is no summary; the checkpoint holds weights, not the config. Only
how to evaluate may change: the eval batch, the test-time statistics diagnostics (``batch_stats``:
test/err_batch_stats and test/err_precise_bn beside test/err on running statistics) and PreciseBN.
The result goes to ``eval.json`` in the run directory, next to ``summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from normlab import REPO_ROOT
from normlab.errors import ConfigError
from normlab.run.lifecycle import final_metrics, start
from normlab.run.resume import weights_misfit
from normlab.run.summary import write_json_atomic
from normlab.run.trainer import build_trainer
from normlab.tasks import build_task

CALLBACKS = REPO_ROOT / "conf" / "callbacks"


def run_config(ckpt: Path) -> tuple[Path, DictConfig]:
    """The run directory of ``<run>/checkpoints/<name>.ckpt`` and the config that run trained with."""
    if not ckpt.is_file():
        raise ConfigError(
            f"no checkpoint at {ckpt}. Fix: pass ckpt_path=<run dir>/checkpoints/best.ckpt (or last.ckpt)"
        )
    run_dir = ckpt.resolve().parent.parent
    summary, hydra_config = run_dir / "summary.json", run_dir / ".hydra" / "config.yaml"
    if summary.is_file() and "config" in (data := json.loads(summary.read_text())):
        return run_dir, OmegaConf.create(data["config"])
    if hydra_config.is_file():
        return run_dir, OmegaConf.load(hydra_config)
    raise ConfigError(
        f"{ckpt} is not in a normlab run directory (no summary.json or .hydra/config.yaml in "
        f"{run_dir}). Fix: pass the checkpoint of a run train.py wrote, <run dir>/checkpoints/best.ckpt"
    )


def eval_config(run_cfg: DictConfig, cfg: DictConfig) -> DictConfig:
    """The run's config with this evaluation's choices: one device, no loggers, no checkpoints."""
    with open_dict(run_cfg):
        if cfg.get("eval_batch"):
            run_cfg.data.eval_batch = cfg.eval_batch
        default = OmegaConf.load(CALLBACKS / "default.yaml")
        if "callbacks" not in run_cfg:
            # Trained before conf/callbacks/: the default callbacks (its old precise_bn.* and
            # task.diagnostics.* switches are not read; batch_stats= and precise_bn= set them here).
            run_cfg.callbacks = default
        if cfg.get("batch_stats") is not None:
            entry = run_cfg.callbacks.get("batch_stats") or default.batch_stats
            run_cfg.callbacks.batch_stats = entry if cfg.batch_stats else None
        if cfg.get("precise_bn") is not None:
            precise = OmegaConf.load(CALLBACKS / "precise_bn.yaml").precise_bn  # true: its default batches
            if not isinstance(cfg.precise_bn, bool):  # a number: that many batches
                precise.num_batches = cfg.precise_bn
            run_cfg.callbacks.precise_bn = precise if cfg.precise_bn is not False else None
        if cfg.get("threads"):
            run_cfg.threads = cfg.threads
        run_cfg.logger = {}
        run_cfg.trainer.update(
            enable_checkpointing=False, devices=1, num_nodes=1, strategy="auto", enable_progress_bar=False
        )
    return run_cfg


def evaluate(cfg: DictConfig) -> dict:
    """Test the checkpoint's weights with its run's config; write and return ``eval.json``."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("no checkpoint given. Fix: python eval.py ckpt_path=<run dir>/checkpoints/best.ckpt")
    ckpt = Path(cfg.ckpt_path)
    run_dir, run_cfg = run_config(ckpt)
    run_cfg = eval_config(run_cfg, cfg)
    start(run_cfg)
    trainer = build_trainer(run_cfg, run_dir, loggers=[])
    module, data = build_task(run_cfg, trainer.world_size)
    if misfit := weights_misfit(module, ckpt, run_cfg.norm.name):
        raise ConfigError(misfit)
    trainer.test(module, datamodule=data, ckpt_path=str(ckpt), verbose=False)
    precise = run_cfg.callbacks.get("precise_bn")
    result = {
        "ckpt_path": str(ckpt.resolve()),
        "eval_batch": run_cfg.data.get("eval_batch"),
        "batch_stats": run_cfg.callbacks.get("batch_stats") is not None,
        "precise_bn": OmegaConf.to_container(precise) if precise else {},
        "metrics": final_metrics(trainer),
    }
    write_json_atomic(run_dir / "eval.json", result)
    return result
