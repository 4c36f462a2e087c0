"""Every image norm on channels-last inputs (``x.to(memory_format=torch.channels_last)``, as
``model.to(memory_format=...)`` feeds them): outputs and gradients are those of the same values
in the default layout, on each path a layer can take.

- ``composite``: below the fused threshold, PyTorch ops with autograd;
- ``fused``: above it (``FUSED_MIN_ELEMENTS``), the closed-form backwards of ``norms/fast/``;
- ``kernel``: above it with the C kernels on. The kernels read contiguous rows only, so the
  contiguous input takes them and the channels-last one the fused PyTorch path: the two must agree.

The incoming gradient comes in either memory format too (a channels-last loss or the next layer's).
"""

from __future__ import annotations

import copy

import pytest
import torch
from random_state import randomize

from normlab.norms import NORMS, build_norm, fast, knobs_of, supports

PATHS = {"composite": (1 << 60, "0"), "fused": (0, "0"), "kernel": (0, "1")}  # threshold, NORMLAB_CPU_KERNELS
SHAPES = {torch.channels_last: (4, 16, 6, 5), torch.channels_last_3d: (2, 16, 3, 4, 5)}
TOL = dict(rtol=1e-4, atol=2e-5)
IMAGE_NORMS = [name for name in sorted(NORMS) if supports(name, "nchw")]


def make(name, train):
    knobs = {"virtual_batch": 2} if name == "ghost_batch" else {}  # several ghost batches
    if "num_groups" in knobs_of(name):
        knobs["num_groups"] = 4  # groups of several channels
    return randomize(build_norm(name, 16, "nchw", **knobs).train(train), seed=1)


def run(layer, x, g):
    x = x.detach().clone().requires_grad_()  # clone keeps the memory format
    y = layer(x)
    y.backward(g)
    return [y.detach(), x.grad, *(p.grad for p in layer.parameters())]


@pytest.mark.parametrize("grad_format", ["same", "contiguous"])
@pytest.mark.parametrize("memory_format", list(SHAPES), ids=["4d", "5d"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", IMAGE_NORMS)
def test_channels_last_input_gives_the_contiguous_inputs_output_and_gradients(
    name, path, train, memory_format, grad_format, monkeypatch
):
    threshold, use_kernels = PATHS[path]
    monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", threshold)
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", use_kernels)
    torch.manual_seed(0)
    x = torch.randn(SHAPES[memory_format]) * 2 + 0.5
    g = torch.randn_like(x)
    layer = make(name, train)
    reference = copy.deepcopy(layer)
    expected = run(reference, x, g)
    g_last = g.contiguous(memory_format=memory_format) if grad_format == "same" else g
    found = run(layer, x.contiguous(memory_format=memory_format), g_last)
    for what, a, b in zip(["output", "grad of x", *(n for n, _ in layer.named_parameters())], found, expected):
        torch.testing.assert_close(a, b, **TOL, msg=what)
    for (bname, a), b in zip(layer.named_buffers(), reference.buffers()):  # running statistics
        torch.testing.assert_close(a, b, **TOL, msg=f"buffer {bname}")
