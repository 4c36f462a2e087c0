"""Every variant (conf/variant) composes with every experiment that sweeps variants, and builds
its model: an experiment's knobs for one norm (GroupNorm's groups) reach that norm's arms only
(conf/norm_knobs), where a global ``norm:`` key gave BatchNorm a ``num_groups`` it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_train import FAST, SMALL_EVAL, sweep_of

from normlab.models import build_model
from normlab.norms import norm_class
from normlab.run import train
from normlab.run.config_check import check_config

CONF = Path(__file__).resolve().parents[2] / "conf"
VARIANTS = sorted(p.stem for p in (CONF / "variant").glob("*.yaml"))
SWEEPS_VARIANTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if "variant" in sweep_of(p.stem)[1])


def test_the_experiments_that_sweep_variants_are_found():
    assert {"gn_vs_bn", "gn_vs_bn_full"} <= set(SWEEPS_VARIANTS)
    assert {"bn", "gn", "gn_ws", "sync_bn"} <= set(VARIANTS)


def norms_of(cfg):
    """The model the config builds (CIFAR-10's classes and channels) and its norm layers."""
    model = build_model(
        OmegaConf.to_container(cfg.model, resolve=True),
        OmegaConf.to_container(cfg.norm, resolve=True),
        num_classes=10,
        in_channels=3,
    )
    return [m for m in model.modules() if type(m) is norm_class(cfg.norm.name)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("experiment", SWEEPS_VARIANTS)
def test_every_variant_composes_with_every_experiment_that_sweeps_variants(compose, experiment, variant):
    cfg = compose([f"experiment={experiment}", f"variant={variant}"])
    check_config(cfg)  # a knob the norm does not take is refused here, in one line
    layers = norms_of(cfg)
    assert layers, f"{experiment} variant={variant}: no {cfg.norm.name} layer in the model"
    if "num_groups" in cfg.norm:
        assert {m.num_groups for m in layers} == {cfg.norm.num_groups}


@pytest.mark.parametrize("arm", ["variant=gn", "variant=gn_ws", "norm=group"])
def test_gn_vs_bn_full_gives_its_groupnorm_arms_the_papers_32_groups_and_the_budget_one_8(compose, arm):
    assert compose(["experiment=gn_vs_bn_full", arm]).norm.num_groups == 32
    assert compose(["experiment=gn_vs_bn", arm]).norm.num_groups == 8
    assert compose(["experiment=gn_vs_bn_full", arm, "norm.num_groups=16"]).norm.num_groups == 16  # the command wins


@pytest.mark.slow
def test_the_full_experiments_batchnorm_arm_trains(compose):
    """The arm that failed to compose, one batch end to end (on offline MNIST, not CIFAR-10)."""
    cfg = compose(
        ["experiment=gn_vs_bn_full", "variant=bn", "data=mnist5k", "data.batch=8", "logger=none", *FAST, *SMALL_EVAL]
    )
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["norm"] == "batch"
