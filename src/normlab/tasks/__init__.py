"""Task registry: a task's builder and the datasets it trains on.

Every builder has one signature, ``build(cfg, world_size) -> (LightningModule, LightningDataModule)``;
a new task (language modelling, style transfer) is one module with its builder and one line here.
``datasets`` is the table ``data.name`` is looked up in, for the task's config check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from omegaconf import DictConfig

from normlab.data import DATASETS
from normlab.data.photos import STYLE_DATASETS
from normlab.data.text import TEXT_DATASETS
from normlab.errors import unknown_name
from normlab.tasks.classify import build_classify
from normlab.tasks.lm import build_lm
from normlab.tasks.style import build_style


@dataclass(frozen=True)
class Task:
    build: Callable  # (cfg, world_size) -> (LightningModule, LightningDataModule)
    datasets: Mapping[str, Callable]  # data.name -> its loader


TASKS: dict[str, Task] = {
    "classify": Task(build_classify, DATASETS),
    "lm": Task(build_lm, TEXT_DATASETS),
    "style": Task(build_style, STYLE_DATASETS),
}


def task_of(name: str) -> Task:
    if name not in TASKS:
        raise unknown_name("task", name, TASKS, "task")
    return TASKS[name]


def build_task(cfg: DictConfig, world_size: int = 1):
    return task_of(cfg.task.name).build(cfg, world_size)
