"""Every registered norm against its plain formula: forward, backward, running statistics,
train and eval mode, with and without affine, on both layouts, in fp64 and fp32."""

from __future__ import annotations

import copy

import pytest
import torch

from normlab.norms import NORMS, build_norm, knobs_of, supports
from normlab.norms.reference import REFERENCE

SHAPES = {"nchw": (6, 32, 5, 7), "nlc": (6, 9, 32)}  # 32 channels: GN groups of 4, well conditioned
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-5)}


def make(name, layout, dtype, affine=True):
    knobs = {"affine": affine} if "affine" in knobs_of(name) else {}
    m = build_norm(name, 32, layout, **knobs).to(dtype)
    torch.manual_seed(1)
    for p in m.parameters():  # not the init values, so a swapped gamma/beta would show
        p.data.normal_()
    return m


def sample(layout, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(SHAPES[layout], generator=g, dtype=torch.float64) * 2 + 0.5).to(dtype)


def test_every_norm_has_a_reference():
    assert set(REFERENCE) == set(NORMS)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("layout", ["nchw", "nlc"])
@pytest.mark.parametrize("name", sorted(NORMS))
def test_forward_backward_and_running_stats(name, layout, affine, dtype):
    if not supports(name, layout):
        pytest.skip(f"{name} has no meaning for layout {layout}")
    native = make(name, layout, dtype, affine)
    ref = copy.deepcopy(native)
    for step in range(3):  # several steps so running statistics accumulate
        x = sample(layout, dtype, seed=step).requires_grad_()
        xr = x.detach().clone().requires_grad_()
        y, yr = native(x), REFERENCE[name](ref, xr)
        torch.testing.assert_close(y, yr, **TOL[dtype])
        grad_out = torch.randn_like(y)
        y.backward(grad_out)
        yr.backward(grad_out)
        torch.testing.assert_close(x.grad, xr.grad, **TOL[dtype])
        for (pname, p), pr in zip(native.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, pr.grad, **TOL[dtype], msg=f"grad of {pname}")
    for (bname, b), br in zip(native.named_buffers(), ref.buffers()):
        torch.testing.assert_close(b, br, **TOL[dtype], msg=f"buffer {bname}")

    native.eval(), ref.eval()
    x = sample(layout, dtype, seed=9)
    torch.testing.assert_close(native(x), REFERENCE[name](ref, x), **TOL[dtype])


def test_batchnorm_running_var_is_unbiased():
    m = build_norm("batch", 3, "nchw", momentum=1.0)  # momentum 1: running = last batch
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    m.double()(x)
    n = 4 * 2 * 2
    by_hand = ((x - x.mean((0, 2, 3), keepdim=True)) ** 2).sum((0, 2, 3)) / (n - 1)
    torch.testing.assert_close(m.running_var, by_hand)


@pytest.mark.parametrize("name", ["batch", "bln_pooled"])
def test_batch_statistics_differ_between_train_and_eval(name):
    m = build_norm(name, 4, "nchw")
    x = torch.randn(8, 4, 3, 3) * 3 + 2
    y_train = m.train()(x)
    y_eval = m.eval()(x)  # running stats moved only 10% of the way: eval output differs
    assert (y_train - y_eval).abs().max() > 0.1


@pytest.mark.parametrize("name", sorted(n for n in NORMS if not NORMS[n].batch_dependent))
def test_per_sample_norms_ignore_the_rest_of_the_batch(name):
    for layout in [layout for layout in SHAPES if supports(name, layout)]:
        m = make(name, layout, torch.float64)
        x = sample(layout, torch.float64)
        alone = m(x[:1])
        together = m(torch.cat([x[:1], x[1:] * 10 + 3]))[:1]
        torch.testing.assert_close(alone, together)
