"""Diagnostics and callbacks that run the model in train mode leave every norm as they found it.

A forward in train mode changes more than the running averages: BLN sets its mixing weight to
1/m of the batch, BatchRenorm counts its warm-up step. Evaluating in chunks of another size, or
re-estimating statistics, must not leave any of that behind, or every later eval-mode batch and
checkpoint runs a different layer. Checked for every registered norm, on both layouts, through
the callbacks themselves.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from normlab.callbacks.norm_stats import BatchStatDiagnostics, PreciseBN, batch_stat_layers
from normlab.norms import NORMS, build_norm, knobs_of, supports

CHANNELS = 8


class Tokens(nn.Module):
    """(N, C, H, W) images as (N, H*W, C) tokens, for the norms of the ``nlc`` layout."""

    def forward(self, x):
        return x.flatten(2).transpose(1, 2)


def net(name, layout):
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, CHANNELS, 3)] + ([Tokens()] if layout == "nlc" else [])
    knobs = {"num_groups": 4} if "num_groups" in knobs_of(name) else {}  # two channels per group
    layers += [build_norm(name, CHANNELS, layout, **knobs), nn.Flatten(), nn.LazyLinear(4)]
    model = nn.Sequential(*layers)
    model(torch.randn(2, 3, 6, 6))  # the lazy layer's shape
    for _ in range(3):  # training steps: running averages, counters, BLN's 1/m = 1/16
        model(torch.randn(16, 3, 6, 6) * 2 + 1)
    return model.eval()


def state(model):
    """Everything but the parameters' values that a forward could change, as comparable values."""
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors.update({f"buffer:{k}": v.clone() for k, v in model.named_buffers()})  # non-persistent too
    attrs = {
        (name, k): (v.clone() if isinstance(v, torch.Tensor) else v)
        for name, m in model.named_modules()
        for k, v in vars(m).items()
        if not k.startswith("_")
    }
    return tensors, attrs


def assert_same(before, after, skip=()):
    (t0, a0), (t1, a1) = before, after
    assert t0.keys() == t1.keys() and a0.keys() == a1.keys()
    for k in t0:
        if not any(k.endswith(s) for s in skip):
            assert torch.equal(t0[k], t1[k]), f"{k} changed"
    for k in a0:
        same = torch.equal(a0[k], a1[k]) if isinstance(a0[k], torch.Tensor) else a0[k] == a1[k]
        assert same, f"attribute {k} changed: {a0[k]!r} -> {a1[k]!r}"


class Batches:
    def __init__(self, n=3, size=5):
        g = torch.Generator().manual_seed(1)
        self.batches = [torch.randn(size, 3, 6, 6, generator=g) * 3 for _ in range(n)]

    def train_dataloader(self):
        return [(x, torch.zeros(len(x), dtype=torch.long)) for x in self.batches]

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return batch


def evaluate(model, batch, chunk=None):
    x, y = batch
    parts = x.split(chunk) if chunk else [x]
    logits = torch.cat([model(p) for p in parts])
    return {"loss": nn.functional.cross_entropy(logits, y)}


def module_of(model, batch_size):
    return SimpleNamespace(
        model=model, device=torch.device("cpu"), evaluate=evaluate, batch_size=batch_size, log=lambda *a, **k: None
    )


CASES = [(name, layout) for name in sorted(NORMS) for layout in ("nchw", "nlc") if supports(name, layout)]


@pytest.mark.parametrize("name,layout", CASES)
def test_batch_statistics_diagnostics_leave_the_model_as_they_found_it(name, layout):
    model = net(name, layout)
    before = state(model)
    trainer = SimpleNamespace(datamodule=Batches(), sanity_checking=False)
    diagnostics = BatchStatDiagnostics(precise_batches=2)
    pl_module = module_of(model, batch_size=3)  # chunks of 3 and 2 out of the test batch of 5
    diagnostics.on_test_epoch_start(trainer, pl_module)
    test_batch = (torch.randn(5, 3, 6, 6), torch.zeros(5, dtype=torch.long))
    diagnostics.on_test_batch_end(trainer, pl_module, None, test_batch, 0)
    assert_same(before, state(model))


@pytest.mark.parametrize("name,layout", CASES)
def test_precise_bn_changes_only_the_running_averages(name, layout):
    model = net(name, layout)
    before = state(model)
    trainer = SimpleNamespace(datamodule=Batches(size=3), sanity_checking=False)
    PreciseBN(num_batches=2).on_validation_start(trainer, module_of(model, batch_size=3))
    recomputed = ("running_mean", "running_var") if batch_stat_layers(model) else ()
    assert_same(before, state(model), skip=recomputed)
