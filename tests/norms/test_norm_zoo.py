"""What the parametrized reference tests cannot see with default knobs: ghost batches that
really split, Batch Renormalization's clipping and warm-up, FRN's learned eps, the identities
of layer2d / group1 / switchable / batch_instance / cond_instance, AdaIN, layouts a norm
refuses, and the callbacks (PreciseBN on every BatchNorm-like layer, mixing weights)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.callbacks.norm_stats import MixingWeights, PreciseBN, batch_stat_layers
from normlab.errors import ConfigError
from normlab.norms import NORMS, build_norm, norm_layer, supports
from normlab.norms.adain import adain
from normlab.norms.cond_instance import set_style
from normlab.norms.reference import REFERENCE
from normlab.tasks.optim import build_optimizer, param_groups

F64 = dict(rtol=1e-10, atol=1e-10)


def images(n=10, c=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, 5, 4, generator=g, dtype=torch.float64) * 2 + 1


def tokens(n=10, c=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 7, c, generator=g, dtype=torch.float64) * 2 + 1


def randomize(m):
    torch.manual_seed(1)
    for p in m.parameters():
        p.data.normal_()
    return m


def check_against_reference(m, xs):
    """Forward, input and parameter gradients, buffers, over several training steps, then eval."""
    ref = copy.deepcopy(m)
    for x in xs:
        x, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        y, yr = m(x), REFERENCE[canonical_name(m)](ref, xr)
        torch.testing.assert_close(y, yr, **F64)
        g = torch.randn_like(y)
        y.backward(g), yr.backward(g)
        torch.testing.assert_close(x.grad, xr.grad, **F64)
        for (name, p), pr in zip(m.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, pr.grad, **F64, msg=name)
    for (name, b), br in zip(m.named_buffers(), ref.buffers()):
        torch.testing.assert_close(b, br, **F64, msg=name)
    m.eval(), ref.eval()
    torch.testing.assert_close(m(xs[0]), REFERENCE[canonical_name(m)](ref, xs[0]), **F64)


def canonical_name(m):
    return next(k for k, cls in NORMS.items() if type(m) is cls)


# --- ghost_batch --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_ghost_batch_is_batchnorm_run_separately_on_each_sub_batch(layout):
    x = (images() if layout == "nchw" else tokens()).requires_grad_()  # 10 samples: ghosts of 4, 4 and 2
    gbn = randomize(build_norm("ghost_batch", 8, layout, virtual_batch=4, momentum=0.3).double())
    bn = build_norm("batch", 8, layout).double()
    bn.load_state_dict(gbn.state_dict(), strict=False)  # same gamma, beta, running statistics
    xb = x.detach().clone().requires_grad_()
    y = gbn(x)
    y_bn = torch.cat([bn(part) for part in xb.split(4)])
    torch.testing.assert_close(y, y_bn, **F64)
    g = torch.randn_like(y)
    y.backward(g), y_bn.backward(g)
    torch.testing.assert_close(x.grad, xb.grad, **F64)
    torch.testing.assert_close(gbn.weight.grad, bn.weight.grad, **F64)
    torch.testing.assert_close(gbn.bias.grad, bn.bias.grad, **F64)
    # Running statistics: one step towards the size-weighted mean of the three ghosts' statistics.
    dims = (0, 2, 3) if layout == "nchw" else (0, 1)
    parts = x.detach().split(4)
    shares = [len(p) / 10 for p in parts]
    mean = sum(s * p.mean(dims) for s, p in zip(shares, parts))
    var = sum(s * p.var(dims, unbiased=True) for s, p in zip(shares, parts))
    torch.testing.assert_close(gbn.running_mean, 0.3 * mean, **F64)
    torch.testing.assert_close(gbn.running_var, 0.7 + 0.3 * var, **F64)


def test_ghost_batch_splits_only_in_training_and_is_batchnorm_for_small_batches():
    x = images()
    gbn, bn = build_norm("ghost_batch", 8, virtual_batch=4).double(), build_norm("batch", 8).double()
    assert (gbn(x) - bn(x)).abs().max() > 0.1  # ghosts of 4 are not the batch of 10
    gbn.eval(), bn.eval()
    bn.load_state_dict(gbn.state_dict(), strict=False)
    torch.testing.assert_close(gbn(x), bn(x), **F64)  # eval: running statistics, whole batch
    small, small_bn = build_norm("ghost_batch", 8, virtual_batch=16).double(), build_norm("batch", 8).double()
    torch.testing.assert_close(small(x), small_bn(x), **F64)
    torch.testing.assert_close(small.running_var, small_bn.running_var, **F64)
    with pytest.raises(ConfigError, match="virtual_batch=0"):
        build_norm("ghost_batch", 8, virtual_batch=0)


def test_a_last_ghost_batch_of_one_sample_joins_the_one_before():
    x = images()[:9]  # ghosts of 4 and 5, not 4, 4 and 1
    gbn, bn = build_norm("ghost_batch", 8, virtual_batch=4).double(), build_norm("batch", 8).double()
    torch.testing.assert_close(gbn(x), torch.cat([bn(x[:4]), bn(x[4:])]), **F64)


# --- batch_renorm -------------------------------------------------------------------------


def renorm(**knobs):
    return randomize(build_norm("batch_renorm", 8, **knobs).double())


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_batch_renorm_with_active_clipping_matches_its_formula(layout):
    m = build_norm("batch_renorm", 8, layout, relax_start=0, r_max_step=2, d_max_step=3, momentum=0.5)
    m = randomize(m.double())
    m.running_mean.fill_(3.0), m.running_var.fill_(50.0)  # far from the batches: r and d are clipped
    make = images if layout == "nchw" else tokens
    check_against_reference(m, [make(seed=s) for s in range(4)])
    assert int(m.num_batches_tracked) == 4


def test_batch_renorm_treats_r_and_d_as_constants_in_the_gradient():
    """With r, d detached, dy/dx is BatchNorm's gradient times r, per channel (here r is unclipped)."""
    m = renorm(relax_start=0, r_max_step=1, d_max_step=1)
    m.running_mean.fill_(0.5), m.running_var.fill_(3.0), m.num_batches_tracked.fill_(1)  # past the warm-up
    x = images().requires_grad_()
    xb = x.detach().clone().requires_grad_()
    bn = build_norm("batch", 8).double()
    bn.load_state_dict(m.state_dict(), strict=False)
    r = torch.sqrt(x.detach().var((0, 2, 3), unbiased=False) + 1e-5) / (3.0 + 1e-5) ** 0.5
    assert (r < 3).all() and (r > 1 / 3).all()
    g = torch.randn_like(x)
    m(x).backward(g), bn(xb).backward(g)
    torch.testing.assert_close(x.grad, xb.grad * r.view(1, -1, 1, 1), **F64)


def test_batch_renorm_warm_up_goes_from_batchnorm_to_the_final_clips():
    m = build_norm("batch_renorm", 4, r_max=3.0, d_max=5.0, relax_start=10, r_max_step=30, d_max_step=20)
    for step, (r_max, d_max) in {0: (1, 0), 10: (1, 0), 15: (1.5, 2.5), 20: (2, 5), 30: (3, 5), 99: (3, 5)}.items():
        m.num_batches_tracked.fill_(step)
        assert [float(v) for v in m.limits()] == pytest.approx([r_max, d_max]), step
    m.num_batches_tracked.zero_()
    bn = build_norm("batch", 4)
    x = torch.randn(6, 4, 3, 3) * 3 + 2
    torch.testing.assert_close(m(x), bn(x))  # step 0: r_max = 1, d_max = 0 is BatchNorm
    m(x), m.eval()(x)
    assert int(m.num_batches_tracked) == 2  # training steps only


# --- frn, layer2d, group1, switchable, batch_instance, cond_instance, adain -----------------


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_frn_with_learnable_eps_matches_its_formula(layout):
    m = randomize(build_norm("frn", 8, layout, learnable_eps=True).double())
    assert m.eps_l is not None and m.eps_l.requires_grad
    make = images if layout == "nchw" else tokens
    check_against_reference(m, [make(seed=s) for s in range(2)])
    assert m.eps_l.grad.abs().sum() > 0


def test_frn_output_never_goes_below_tau():
    m = randomize(build_norm("frn", 8).double())
    y = m(images())
    assert (y >= m.tau.view(1, -1, 1, 1)).all() and (y == m.tau.view(1, -1, 1, 1)).any()


def test_layer2d_normalizes_each_pixel_over_channels_and_is_layer_on_tokens():
    x = images()
    m = randomize(build_norm("layer2d", 8).double())
    assert m.eps == 1e-6  # ConvNeXt's and timm's LayerNorm2d
    by_hand = F.layer_norm(x.permute(0, 2, 3, 1), (8,), m.weight, m.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(m(x), by_hand, **F64)
    torch.testing.assert_close(m(x.contiguous(memory_format=torch.channels_last)), by_hand, **F64)
    assert (build_norm("layer2d", 8).double()(x) - build_norm("layer", 8).double()(x)).abs().max() > 0.1
    t = tokens()
    nlc, layer = build_norm("layer2d", 8, "nlc").double(), build_norm("layer", 8, "nlc", eps=1e-6).double()
    layer.load_state_dict(randomize(nlc).state_dict())
    torch.testing.assert_close(nlc(t), layer(t), **F64)


def test_group1_is_group_norm_with_one_group_and_refuses_num_groups():
    m = build_norm("group1", 8).double()
    assert m.num_groups == 1 and isinstance(m, NORMS["group"])
    x = images()
    torch.testing.assert_close(m(x), build_norm("layer", 8).double()(x), **F64)
    torch.testing.assert_close(m(x), build_norm("group", 8, num_groups=1).double()(x), **F64)
    with pytest.raises(ConfigError, match=r"norm 'group1' has no option num_groups \(it takes: eps, affine\)"):
        build_norm("group1", 8, num_groups=2)


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
@pytest.mark.parametrize("part,equals", [(0, "instance"), (1, "layer"), (2, "batch")])
def test_switchable_with_one_weight_dominant_is_that_norm(layout, part, equals):
    x = images() if layout == "nchw" else tokens()
    m = build_norm("switchable", 8, layout).double()
    with torch.no_grad():
        m.mean_weight[part] = m.var_weight[part] = 60.0  # softmax ~ one-hot (e^-60 ~ 1e-26)
    torch.testing.assert_close(m(x), build_norm(equals, 8, layout).double()(x), **F64)
    w = m.mixing_weights()
    assert set(w) == {f"{s}/{p}" for s in ("mean", "var") for p in ("in", "ln", "bn")}
    assert w[f"mean/{['in', 'ln', 'bn'][part]}"] == pytest.approx(1.0)


def test_batch_instance_is_batch_at_rho_1_instance_at_rho_0_and_rho_stays_in_0_1():
    x = images()
    m = build_norm("batch_instance", 8).double()
    torch.testing.assert_close(m(x), build_norm("batch", 8).double()(x), **F64)  # rho starts at 1
    with torch.no_grad():
        m.rho.zero_()
    torch.testing.assert_close(m(x), build_norm("instance", 8).double()(x), **F64)
    opt = torch.optim.SGD(m.parameters(), lr=10.0)
    m.rho.data.fill_(0.5)
    (m(x) * torch.randn_like(x)).sum().backward()
    opt.step()
    assert (m.rho < 0).any() or (m.rho > 1).any(), "the step must push some rho out of [0, 1]"
    outside = m.rho.detach().clone()
    m(x)  # the next training forward projects rho back before using it
    torch.testing.assert_close(m.rho.detach(), outside.clamp(0, 1))
    assert m.mixing_weights()["rho_mean"] == pytest.approx(float(outside.clamp(0, 1).mean()))


def test_cond_instance_uses_the_current_style_row():
    x = images()
    m = randomize(build_norm("cond_instance", 8, num_styles=3).double())
    net = nn.Sequential(m, nn.ReLU(), copy.deepcopy(m))
    assert set_style(net, 2) == 2 and m.style == 2
    normalized = F.instance_norm(x)
    expected = normalized * m.style_weight[2].view(1, -1, 1, 1) + m.style_bias[2].view(1, -1, 1, 1)
    torch.testing.assert_close(m(x), expected, **F64)
    m.style = 0
    assert (m(x) - expected).abs().max() > 0.1
    with pytest.raises(ConfigError, match="style 3 of a layer with num_styles=3"):
        m.style = 3
    one, inst = build_norm("cond_instance", 8).double(), build_norm("instance", 8).double()
    torch.testing.assert_close(one(x), inst(x), **F64)  # one style: InstanceNorm


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_adain_gives_the_content_the_style_statistics(layout):
    content = images(4) if layout == "nchw" else tokens(4)
    style = (images(4, seed=1) if layout == "nchw" else tokens(4, seed=1)) * 3 - 2
    dims = (2, 3) if layout == "nchw" else (1,)

    def stats(t):
        return t.mean(dims, keepdim=True), torch.sqrt(t.var(dims, unbiased=False, keepdim=True) + 1e-5)

    (mu_c, sd_c), (mu_s, sd_s) = stats(content), stats(style)
    out = adain(content, style, layout=layout)
    torch.testing.assert_close(out, sd_s * (content - mu_c) / sd_c + mu_s, **F64)  # Huang & Belongie Eq. 8
    torch.testing.assert_close(out.mean(dims, keepdim=True), mu_s, **F64)


# --- layouts a norm refuses ---------------------------------------------------------------


class ImagesOnly(nn.Identity):
    """A stand-in for a norm with no meaning for tokens."""

    axes = {"nchw": "(H, W)", "nlc": "refused"}
    batch_dependent = False
    layouts = ("nchw",)

    def __init__(self, num_channels: int, layout: str = "nchw"):
        super().__init__()


def test_a_norm_is_refused_for_a_layout_it_does_not_support(monkeypatch, compose):
    monkeypatch.setitem(NORMS, "images_only", ImagesOnly)
    assert supports("images_only", "nchw") and not supports("images_only", "nlc")
    assert all(supports(name, layout) for name in NORMS if name != "images_only" for layout in ("nchw", "nlc"))
    build_norm("images_only", 8, "nchw")
    for build in (lambda: build_norm("images_only", 8, "nlc"), lambda: norm_layer("images_only", "nlc")):
        with pytest.raises(ConfigError) as err:
            build()
        message = str(err.value)
        assert "\n" not in message and "norm 'images_only' has no meaning for layout 'nlc'" in message
        assert "Fix: use it with a model of that layout, or set norm=<one of batch," in message
    from normlab.run.config_check import check_config

    cfg = compose(["task=lm"])
    cfg.norm = {"name": "images_only"}
    with pytest.raises(ConfigError, match="no meaning for layout 'nlc'"):
        check_config(cfg)  # refused before anything is built


# --- callbacks ----------------------------------------------------------------------------

# Batch statistics in training and running averages (batch, bln_pooled, bln, batch_renorm, ghost_batch,
# evonorm_b0, switchable, batch_instance, sync_batch): what PreciseBN re-estimates, as their classes declare.
BATCH_LIKE = [name for name in sorted(NORMS) if batch_stat_layers(build_norm(name, 16))]


class Batches:
    """The two datamodule methods PreciseBN uses; batches of 5 (ghost batches of 2, 2 and 1)."""

    def __init__(self, batches):
        self.batches = batches

    def train_dataloader(self):
        return [(x, torch.zeros(len(x))) for x in self.batches]

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return batch


@pytest.mark.parametrize("name", BATCH_LIKE)
def test_precise_bn_callback_sets_population_statistics_of_every_batch_like_norm(name):
    """The mean and biased variance of all values of the batches seen, per channel (Wu & Johnson
    2021, Sec. 3): not the average of per-batch variances, which misses the spread of the batch
    means. Ghost batches larger than the batch: BatchNorm's statistics, so the target is exact."""
    torch.manual_seed(0)
    knobs = {"virtual_batch": 8} if name == "ghost_batch" else {}
    model = nn.Sequential(nn.Conv2d(3, 8, 3), build_norm(name, 8, **knobs))
    layer = model[1]
    before, momentum = copy.deepcopy(layer.state_dict()), layer.momentum
    batches = [torch.randn(5, 3, 6, 6) * (i + 1) + i for i in range(4)]
    trainer = SimpleNamespace(datamodule=Batches(batches), sanity_checking=False)
    pl_module = SimpleNamespace(model=model.eval(), device=torch.device("cpu"))
    assert batch_stat_layers(model) == [layer]
    PreciseBN(num_batches=3).on_validation_start(trainer, pl_module)
    with torch.no_grad():
        feats = torch.cat([model[0](b) for b in batches[:3]])
    over = (0,) if name == "bln" else (0, 2, 3)  # bln: one statistic per position
    torch.testing.assert_close(layer.running_mean, feats.mean(over), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.running_var, feats.var(over, unbiased=False), rtol=1e-5, atol=1e-5)
    assert layer.momentum == momentum and not layer.training and not model.training
    if name == "batch_renorm":  # re-estimating is not training: the warm-up did not advance
        assert int(layer.num_batches_tracked) == int(before["num_batches_tracked"])


def test_precise_bn_runs_batch_renorm_as_batchnorm_whatever_its_running_averages():
    """r and d read the running averages; while PreciseBN rebuilds them the layer must not, so
    the next layer's statistics are the same from any starting averages."""
    torch.manual_seed(0)
    batches = [torch.randn(5, 3, 6, 6) * 2 + 1 for _ in range(3)]
    results = []
    for start in (0.0, 50.0):
        torch.manual_seed(1)  # the same weights
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3),
            build_norm("batch_renorm", 8, relax_start=0, r_max_step=1, d_max_step=1),
            nn.Conv2d(8, 8, 1),
            build_norm("batch", 8),
        )
        model[1].num_batches_tracked.fill_(10)  # past the warm-up: r and d at their limits
        model[1].running_mean.fill_(start)
        PreciseBN(num_batches=3).recompute(
            SimpleNamespace(datamodule=Batches(batches)), SimpleNamespace(model=model, device=torch.device("cpu"))
        )
        results.append(model[3].running_mean.clone())
    torch.testing.assert_close(results[0], results[1])


def test_precise_bn_callback_skips_the_sanity_check_and_models_without_batch_statistics():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), build_norm("batch", 8))
    before = copy.deepcopy(model.state_dict())
    trainer = SimpleNamespace(datamodule=Batches([torch.randn(4, 3, 6, 6)]), sanity_checking=True)
    PreciseBN().on_validation_start(trainer, SimpleNamespace(model=model, device=torch.device("cpu")))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    group_net = SimpleNamespace(model=nn.Sequential(build_norm("group", 8)), device=torch.device("cpu"))
    assert PreciseBN().recompute(SimpleNamespace(datamodule=None), group_net) == 0


@pytest.mark.parametrize(
    "name,mixing", [("switchable", {"mean_weight", "var_weight"}), ("batch_instance", {"rho"}), ("batch", set())]
)
def test_mixing_weights_get_no_weight_decay_and_everything_else_does(name, mixing):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), build_norm(name, 8))
    opt = build_optimizer(param_groups(model), {"name": "sgd", "weight_decay": 5e-4}, 0.1)
    names = {id(p): n.split(".")[-1] for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert undecayed == mixing
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_mixing_weights_are_logged_for_every_layer_that_learns_a_mixture():
    model = nn.Sequential(
        build_norm("switchable", 4), nn.ReLU(), build_norm("batch_instance", 4), build_norm("batch", 4)
    )
    logged = []
    logger = SimpleNamespace(log_metrics=lambda metrics, step: logged.append((metrics, step)))
    MixingWeights().on_train_epoch_end(SimpleNamespace(loggers=[logger], global_step=7), SimpleNamespace(model=model))
    ((metrics, step),) = logged
    assert step == 7
    assert metrics["mixing/0/mean/in"] == pytest.approx(1 / 3) and metrics["mixing/2/rho_mean"] == 1.0
    assert len(metrics) == 7 and not any(k.startswith("mixing/3") for k in metrics)


@pytest.mark.slow
def test_a_run_with_precise_bn_recomputes_before_val_and_test_and_logs_mixing_weights(compose, monkeypatch):
    from pathlib import Path

    from normlab.run import train

    calls = []
    recompute = PreciseBN.recompute

    def counting(self, trainer, pl_module):
        calls.append(recompute(self, trainer, pl_module))
        return calls[-1]

    monkeypatch.setattr(PreciseBN, "recompute", counting)
    cfg = compose(
        [
            "norm=switchable",
            "model=resnet8",
            "callbacks=precise_bn",
            "callbacks.precise_bn.num_batches=3",
            "debug=fast_dev_run",
            "data.subset=200",
            "data.batch=4",
            "data.eval_batch=50",
            "~callbacks.batch_stats",
            "logger=csv",
        ]
    )
    assert train(cfg)["status"] == "completed"
    assert calls == [3, 3]  # before validation and before test, 3 training batches each
    header = next(Path(cfg.paths.output_dir).rglob("metrics.csv")).read_text().splitlines()[0]
    assert "mixing/stem.1/mean/bn" in header and "mixing/blocks.2.norm2/var/in" in header
