from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# W&B must never reach for the network or a login prompt in tests.
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def compose(tmp_path):
    """``compose(["norm=group", ...])``: the config train.py would run, writing into tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    def _compose(overrides=()):
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = hydra_compose("train", overrides=list(overrides), return_hydra_config=False)
        with open_dict(cfg):
            cfg.paths.root_dir = str(ROOT)
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.cache_dir = str(tmp_path / "cache")
        return cfg

    return _compose
