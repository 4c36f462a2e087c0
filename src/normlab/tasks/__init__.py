"""Task registry: a task name builds its LightningModule and LightningDataModule from the config.

A new task (language modelling, style transfer) is one builder here: ``build(cfg, world_size)``
returns ``(module, datamodule)``.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from normlab.errors import unknown_name
from normlab.tasks.lm import build_lm


def build_classify(cfg: DictConfig, world_size: int):
    from normlab.data import build_image_datamodule
    from normlab.models import build_model
    from normlab.tasks.classify import ImageClassifier

    data = build_image_datamodule(
        OmegaConf.to_container(cfg.data, resolve=True), cfg.seed, channels_last=cfg.trainer.get("channels_last", False)
    )
    data.setup()
    model = build_model(
        OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.norm, resolve=True),
        num_classes=data.num_classes, in_channels=data.splits.in_channels,
    )
    if cfg.trainer.get("channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    optim_cfg = OmegaConf.to_container(cfg.task.optim, resolve=True)
    return ImageClassifier(model, optim_cfg, cfg.data.batch, cfg.data.batch * world_size), data


def build_style(cfg: DictConfig, world_size: int):
    from normlab.tasks.style import build_style_task

    return build_style_task(cfg, world_size)


TASKS = {"classify": build_classify, "lm": build_lm, "style": build_style}


def build_task(cfg: DictConfig, world_size: int = 1):
    name = cfg.task.name
    if name not in TASKS:
        raise unknown_name("task", name, TASKS, "task")
    return TASKS[name](cfg, world_size)
