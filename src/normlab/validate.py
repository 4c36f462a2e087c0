"""Check a composed config before anything is built, so a typo costs a second, not a run.

Each check raises ``ConfigError`` with one line: what is wrong and the fix.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from normlab.errors import ConfigError, unknown_name


def check_config(cfg: DictConfig) -> None:
    from normlab.data import DATASETS
    from normlab.models import model_spec
    from normlab.norms.registry import canonical, check_knobs
    from normlab.tasks import TASKS

    if cfg.task.name not in TASKS:
        raise unknown_name("task", cfg.task.name, TASKS, "task")
    model_spec(cfg.model.name)
    norm = OmegaConf.to_container(cfg.norm, resolve=True)
    name = norm.pop("name")
    canonical(name)
    check_knobs(name, norm)
    if cfg.task.name == "classify" and cfg.data.name not in DATASETS:
        raise unknown_name("dataset", cfg.data.name, DATASETS, "data")
    if not isinstance(cfg.data.batch, int) or cfg.data.batch < 1:
        raise ConfigError(f"data.batch={cfg.data.batch} is not a batch size. Fix: set data.batch to 1 or more.")
