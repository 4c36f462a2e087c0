"""Two backward passes through one graph, and gradients of gradients, for every norm at
training sizes.

Inputs of 2^17 elements and more take the layers' fused paths (normlab.norms.fast), whose
backward differentiates a small inner graph of coefficients. ``loss.backward(retain_graph=True)``
followed by a second backward must work there as on the composite path (and accumulate the
same gradients twice). Gradients of gradients (``create_graph=True``) work on the composite
path and the native kernels; the fused paths' closed-form backwards are first order, so there
they refuse in one line that names the way out (``composite_only``), which then works.
"""

from __future__ import annotations

import pytest
import torch

from normlab.norms import NORMS, build_norm, knobs_of, supports
from normlab.run.norm_checks import check_double_backward

# 2^17 elements: the size where the fused paths start (fast.FUSED_MIN_ELEMENTS).
SHAPES = {"nchw": (8, 32, 32, 16), "nlc": (32, 128, 32)}
CASES = [(name, layout) for name in sorted(NORMS) for layout in ("nchw", "nlc") if supports(name, layout)]


def layer_and_input(name, layout):
    torch.manual_seed(0)
    knobs = {"num_groups": 8} if "num_groups" in knobs_of(name) else {}
    layer = build_norm(name, 32, layout, **knobs)
    x = (torch.randn(SHAPES[layout]) * 2 + 0.5).requires_grad_()
    return layer, x


def loss_of(layer, x):
    return (layer(x) * torch.linspace(-1, 1, x.shape[-1])).square().mean()


@pytest.mark.parametrize("name,layout", CASES)
def test_a_second_backward_through_the_same_graph_accumulates_the_same_gradients(name, layout):
    layer, x = layer_and_input(name, layout)
    loss = loss_of(layer, x)
    loss.backward(retain_graph=True)
    first = [t.grad.clone() for t in (x, *layer.parameters()) if t.grad is not None]
    loss.backward()
    second = [t.grad for t in (x, *layer.parameters()) if t.grad is not None]
    assert len(first) == len(second) > 0
    for g1, g2 in zip(first, second):
        torch.testing.assert_close(g2, 2 * g1)


@pytest.mark.parametrize("name,layout", CASES)
def test_gradients_of_gradients_work_or_refuse_in_one_line_and_work_on_the_composite_path(name, layout):
    check_double_backward(name, layout, {"num_groups": 8} if "num_groups" in knobs_of(name) else {}, SHAPES[layout])
