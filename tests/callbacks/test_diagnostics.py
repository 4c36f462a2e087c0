from __future__ import annotations

import copy

import torch
from torch import nn

from normlab.callbacks.norm_stats import batch_stat_layers, batch_statistics, precise_bn
from normlab.norms import build_norm


def net(norm="batch"):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), build_norm(norm, 8), nn.ReLU(), nn.Conv2d(8, 8, 3), build_norm(norm, 8))


def test_only_batch_dependent_layers_with_running_stats_are_found():
    assert len(batch_stat_layers(net("batch"))) == 2 and len(batch_stat_layers(net("bln_pooled"))) == 2
    assert batch_stat_layers(net("group")) == [] and batch_stat_layers(net("instance")) == []


def test_batch_statistics_normalizes_like_training_and_leaves_running_stats_alone():
    model = net().eval()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(4, 3, 8, 8) * 2 + 1
    with batch_statistics(model):
        y = model(x)
    train_mode = copy.deepcopy(model).train()(x)
    torch.testing.assert_close(y, train_mode)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert not model[1].training


def test_precise_bn_sets_the_population_statistics_of_the_batches():
    model = net()
    batches = [torch.randn(5, 3, 8, 8) * (i + 1) + i for i in range(4)]
    seen = precise_bn(model, iter(batches), num_batches=10)
    assert seen == 4
    with torch.no_grad():
        feats = torch.cat([model[0](b) for b in batches])
    torch.testing.assert_close(model[1].running_mean, feats.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, feats.var((0, 2, 3), unbiased=False), rtol=1e-5, atol=1e-5)
    assert model[1].momentum == 0.1 and model.training


def test_precise_bn_population_variance_exceeds_the_mean_of_batch_variances_when_batch_means_spread():
    """Batches of two correlated images: each batch's variance misses the spread of the batch
    means, which the population estimator keeps (the old estimator's bias at small batch)."""
    torch.manual_seed(0)
    model = nn.Sequential(build_norm("batch", 1))
    batches = [torch.randn(1, 1, 1, 1) * 3 + 0.1 * torch.randn(2, 1, 8, 8) for _ in range(50)]
    precise_bn(model, iter(batches), num_batches=50)
    mean_of_batch_vars = torch.stack([b.var(unbiased=True) for b in batches]).mean()
    pooled = torch.cat(batches)
    torch.testing.assert_close(model[0].running_var, pooled.var(unbiased=False).reshape(1), rtol=1e-4, atol=1e-6)
    assert model[0].running_var.item() > 10 * mean_of_batch_vars.item()
