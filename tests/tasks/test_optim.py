"""Optimizer groups: a layer's learning-rate factors (batch_instance's gate at 10x, as its
authors' main.py trains it with --bin-lr 10) hold through the schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normlab.norms import build_norm
from normlab.tasks.optim import build_optimizer, param_groups, warmup_cosine


def lrs_by_param(opt, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}


def test_the_batch_instance_gate_learns_at_ten_times_the_rate_without_decay_through_the_schedule():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), build_norm("batch_instance", 8))
    opt = build_optimizer(param_groups(model), {"name": "sgd", "weight_decay": 5e-4}, 0.1)
    sched = warmup_cosine(opt, total_steps=10, warmup=0.2)
    for _ in range(4):
        opt.step(), sched.step()
    lrs = lrs_by_param(opt, model)
    conv_lr, conv_decay = lrs["0.weight"]
    rho_lr, rho_decay = lrs["1.rho"]
    assert abs(rho_lr - 10 * conv_lr) < 1e-12 and 0 < conv_lr < 0.1
    assert rho_decay == 0.0 and conv_decay == 5e-4
    assert lrs["1.weight"] == lrs["0.weight"]


def test_rho_lr_one_puts_the_gate_back_with_the_other_mixing_weights():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), build_norm("batch_instance", 8, rho_lr=1.0))
    groups = param_groups(model)
    assert len(groups) == 2 and not any("lr_scale" in g for g in groups)
    opt = build_optimizer(groups, {"name": "sgd"}, 0.1)
    assert {g["lr"] for g in opt.param_groups} == {0.1}
    assert torch.is_tensor(next(iter(opt.param_groups[0]["params"])))


def test_one_cycle_peaks_every_group_at_its_own_rate_then_falls():
    from normlab.tasks.optim import one_cycle

    model = nn.Sequential(nn.Conv2d(3, 8, 3), build_norm("batch_instance", 8))
    opt = build_optimizer(param_groups(model), {"name": "sgd", "momentum": 0.9, "weight_decay": 5e-4}, 0.1)
    peaks = [g["lr"] for g in opt.param_groups]
    sched = one_cycle(opt, total_steps=20, warmup=0.25)
    seen = []
    for _ in range(20):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step(), sched.step()
    top = [max(s[i] for s in seen) for i in range(len(peaks))]
    assert top == pytest.approx(peaks) and len(set(peaks)) == 2  # the gate's 10x group keeps its factor
    assert all(s[0] == pytest.approx(p / 25) for s, p in [(seen[0], peaks[0])])
    # the rise ends at step warmup x steps - 1 (torch counts from 0), then the fall nears zero
    assert seen.index(max(seen)) == 0.25 * 20 - 1 and seen[-1][0] < peaks[0] / 100


def test_an_unknown_schedule_is_one_config_error():
    from types import SimpleNamespace

    from normlab.errors import ConfigError
    from normlab.tasks.optim import configure

    trainer = SimpleNamespace(estimated_stepping_batches=10, gradient_clip_val=None, precision="32-true")
    with pytest.raises(ConfigError, match="unknown schedule 'linear'.*cosine, one_cycle, step"):
        configure(nn.Linear(2, 2), trainer, {"name": "sgd", "lr": 0.1, "schedule": "linear"}, 32)
    out = configure(nn.Linear(2, 2), trainer, {"name": "sgd", "lr": 0.1, "schedule": "one_cycle"}, 32)
    assert isinstance(out["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.OneCycleLR)


def test_the_step_schedule_divides_by_ten_at_each_milestone_after_the_warm_up():
    from normlab.tasks.optim import warmup_step

    opt = build_optimizer([torch.zeros(1, requires_grad=True)], {"name": "sgd"}, 0.1)
    sched = warmup_step(opt, total_steps=100, warmup=0.05, milestones=(0.3, 0.6, 0.9))
    seen = []
    for _ in range(100):
        seen.append(opt.param_groups[0]["lr"])
        opt.step(), sched.step()
    assert seen[0] == pytest.approx(0.1 / 5) and seen[4] == pytest.approx(0.1)  # 5 warm-up steps
    assert seen[29] == pytest.approx(0.1) and seen[30] == pytest.approx(0.01)
    assert seen[60] == pytest.approx(1e-3) and seen[99] == pytest.approx(1e-4)
