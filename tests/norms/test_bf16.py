"""Why bf16 results differ from fp32 ones, measured.

bf16 keeps 8 significant bits, so rounding a value below 8 moves it by at most 2**-6 (half
a unit in the last place of [4, 8)). Native kernels given bf16 activations and fp32
parameters (what autocast does) accumulate mean and variance in fp32 and round only the
output: at most 2**-6 from the exact answer on the same bf16 inputs. Written step by step in
bf16, every intermediate is rounded: the mean of inputs with an offset loses bits, x - mean
inherits that error, and the division by a small std magnifies it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from random_state import randomize

from normlab.norms import build_norm, composite_only, fast
from normlab.norms.reference import REFERENCE

BF16_NATIVE_ATOL = 2**-6  # the documented tolerance for native bf16 norms
CENTERED = ["batch", "layer", "group", "instance"]


def inputs(layout, offset):
    shape = (8, 32, 6, 6) if layout == "nchw" else (8, 16, 32)
    g = torch.Generator().manual_seed(0)
    return (torch.randn(shape, generator=g) + offset).to(torch.bfloat16)  # bf16 values, exactly


def errors(name, layout, offset):
    x = inputs(layout, offset)
    m = build_norm(name, 32, layout)
    exact = REFERENCE[name](copy.deepcopy(m).double(), x.double())  # same bf16 inputs, fp64 math
    native = m(x).double()  # bf16 input, fp32 parameters
    stepwise = REFERENCE[name](copy.deepcopy(m).to(torch.bfloat16), x).double()
    return (native - exact).abs().max().item(), (stepwise - exact).abs().max().item()


@pytest.mark.parametrize("offset", [0.0, 20.0])
@pytest.mark.parametrize("layout", ["nchw", "nlc"])
@pytest.mark.parametrize("name", CENTERED + ["rms"])
def test_native_bf16_is_within_one_output_rounding(name, layout, offset):
    native_err, _ = errors(name, layout, offset)
    assert native_err <= BF16_NATIVE_ATOL


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
@pytest.mark.parametrize("name", CENTERED)
def test_stepwise_bf16_drifts_beyond_that_when_inputs_have_an_offset(name, layout):
    native_err, stepwise_err = errors(name, layout, offset=20.0)
    assert stepwise_err > 3 * BF16_NATIVE_ATOL > native_err


def test_fp32_accumulation_is_what_makes_the_difference():
    """The same formula, step by step in fp32 and rounded once to bf16, is as good as native."""
    x = inputs("nchw", 20.0)
    m = build_norm("layer", 32)
    exact = REFERENCE["layer"](copy.deepcopy(m).double(), x.double())
    fp32_then_round = REFERENCE["layer"](copy.deepcopy(m), x.float()).to(torch.bfloat16).double()
    assert (fp32_then_round - exact).abs().max() <= BF16_NATIVE_ATOL


# bf16 activations reach a norm three ways: a bf16 input and fp32 parameters (what a convolution
# under autocast hands on), the same inside autocast, and a layer cast to bf16 (bf16-true).
BF16_MODES = ["bf16 input", "autocast", "bf16 layer"]
BF16_PATHS = {"composite": 1 << 60, "fused": 0}  # FUSED_MIN_ELEMENTS; the C kernels take fp32 only
BF16_ROUNDING = 2**-8  # one rounding to bf16 moves a value by at most this fraction of it
FP32_NOISE = 1e-4  # of the largest value: two fp32 computations of one formula, with margin
# Knobs that make the test reach a layer's whole formula on 8 samples.
BF16_KNOBS = {
    "ghost_batch": {"virtual_batch": 3},  # ghost batches of 3, 3 and 2 samples, not one plain BatchNorm
    "batch_renorm": {"relax_start": 0, "r_max_step": 1, "d_max_step": 1},  # r and d clipped at r_max, d_max
}


def bf16_layer(name, layout, mode):
    m = randomize(build_norm(name, 32, layout, **BF16_KNOBS.get(name, {})), seed=1)  # running statistics too
    with torch.no_grad():
        if getattr(m, "tau", None) is not None:
            m.tau.uniform_(-0.5, 0.5)  # a TLU that clips some outputs and passes others
        if hasattr(m, "num_batches_tracked"):
            m.num_batches_tracked.fill_(1)  # past Batch Renorm's warm-up
        if hasattr(m, "layer_weight"):
            m.layer_weight.fill_(0.25)  # BLN's mix in eval mode: both parts
    return m.bfloat16() if mode == "bf16 layer" else m


def outputs_and_grads(layer, x, g, autocast=False):
    x = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = layer(x)
    y.backward(g)
    named = [("output", y.detach()), ("grad of x", x.grad)]
    return named + [(f"grad of {n}", p.grad) for n, p in layer.named_parameters()] + list(layer.named_buffers())


def assert_rounded_once(found, expected, what):
    err, bound = (found.double() - expected).abs(), BF16_ROUNDING * expected.abs() + FP32_NOISE * expected.abs().max()
    assert (err <= bound).all(), (
        f"{what}: {int((err > bound).sum())} of {err.numel()} values off by more than one bf16 rounding "
        f"(worst by {(err - bound).max().item():.2e})"
    )


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("path", list(BF16_PATHS))
@pytest.mark.parametrize("mode", BF16_MODES)
@pytest.mark.parametrize("offset", [0.5, 20.0])
@pytest.mark.parametrize("layout", ["nchw", "nlc"])
@pytest.mark.parametrize(
    "name",
    [
        "batch_instance",
        "batch_renorm",
        "bln_pooled",
        "bln",
        "evonorm_b0",
        "evonorm_s0",
        "frn",
        "ghost_batch",
        "layer2d",
        "rms",
        "switchable",
    ],
)
def test_bf16_outputs_and_gradients_are_the_fp32_ones_rounded_once(
    name, layout, offset, mode, path, train, monkeypatch
):
    """Against the fp32 composite path on the same bf16 values: statistics, the TLU's mask,
    EvoNorm's max, the mixes of two or three normalizations and the affine in fp32, gradients
    summed in fp32, each result rounded to bf16 once."""
    check_rounded_once(name, layout, offset, mode, path, train, monkeypatch)


# In a layer cast to bf16, PyTorch's CPU kernels round more than once on images (docs/norms.md);
# on tokens LayerNorm and GroupNorm take an fp32 copy, so they round once there too.
NATIVE_BF16 = [
    (name, layout, mode)
    for name in CENTERED + ["group1"]
    for layout in ("nchw", "nlc")
    for mode in BF16_MODES
    if mode != "bf16 layer" or (layout == "nlc" and name in ("layer", "group", "group1"))
]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("offset", [0.5, 20.0])
@pytest.mark.parametrize("name, layout, mode", NATIVE_BF16)
def test_native_norms_round_bf16_once(name, layout, offset, mode, train, monkeypatch):
    """The norms on PyTorch's kernels, given what autocast hands them (bf16 activations, fp32
    parameters): outputs and gradients rounded once, gamma's gradient on tokens included (the CPU
    LayerNorm kernel sums it in bf16 unless given an fp32 copy)."""
    check_rounded_once(name, layout, offset, mode, "composite", train, monkeypatch)


def check_rounded_once(name, layout, offset, mode, path, train, monkeypatch):
    layer = bf16_layer(name, layout, mode).train(train)
    reference = copy.deepcopy(layer).float()  # bf16 parameters are exact in fp32
    x, g = inputs(layout, offset), inputs(layout, 0.0).roll(1, 0)  # bf16 values, exactly
    with composite_only():
        expected = outputs_and_grads(reference, x.float(), g.float())
    monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", BF16_PATHS[path])
    found = outputs_and_grads(layer, x, g, autocast=mode == "autocast")
    for (what, a), (_, b) in zip(found, expected):
        if what.startswith("running") and mode == "bf16 layer":
            continue  # bf16 running averages: rounded at every update, by design of a bf16 layer
        low = what in ("output", "grad of x") or (mode == "bf16 layer" and b.is_floating_point())
        assert a.dtype == (torch.bfloat16 if low else b.dtype)  # an integer buffer (a step count) is not cast
        assert_rounded_once(a, b.double(), what)


@pytest.mark.parametrize("path", list(BF16_PATHS))
@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_frn_passes_gradient_where_the_tlu_passes_values_that_round_to_tau(layout, path, monkeypatch):
    """x_hat gamma + beta just above tau rounds to tau's own bf16 value: the TLU's mask must be
    taken before the output is rounded, or those values lose their gradient to tau."""
    layer = build_norm("frn", 32, layout)
    with torch.no_grad():
        layer.tau.fill_(0.3)  # gamma 1, beta 0: y = max(x_hat, 0.3); 0.3 is no bf16 value
    shape = (8, 32, 12, 12) if layout == "nchw" else (8, 144, 32)
    x, g = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with composite_only():
        expected = outputs_and_grads(copy.deepcopy(layer), x.float(), g.float())
    y = expected[0][1]
    assert int(((y > 0.3) & (y.bfloat16() == layer.tau.bfloat16()[0])).sum()) > 0  # such values occur
    monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", BF16_PATHS[path])
    for (what, a), (_, b) in zip(outputs_and_grads(layer, x, g), expected):
        assert_rounded_once(a, b.double(), what)
