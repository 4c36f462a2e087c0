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

from normlab.norms import build_norm
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
