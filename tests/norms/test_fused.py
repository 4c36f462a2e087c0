"""The fused path of the hand-written norms (normlab.norms.fast), forced at every size.

Layers take it only for inputs of FUSED_MIN_ELEMENTS elements or more, and the other tests
use small inputs; here the threshold is 0, so the same checks run through the fused path:
against the plain formulas (forward, gradients, running statistics, fp64 and fp32), and the
ghost-batch and batch-renorm identities.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from random_state import randomize
from test_norm_zoo import test_a_last_ghost_batch_of_one_sample_joins_the_one_before as _ghost_last_of_one
from test_norm_zoo import test_ghost_batch_is_batchnorm_run_separately_on_each_sub_batch as _ghost_identity
from test_norms_reference import make, sample, supports
from test_norms_reference import test_forward_backward_and_running_stats as _against_formula

from normlab.norms import NORMS, build_norm, fast
from normlab.norms.fast import layer2d
from normlab.norms.fast import normalize as fused
from normlab.norms.fast.moments import moments, raw_moments
from normlab.norms.fast.normalize import normalize
from normlab.norms.reference import REFERENCE


@pytest.fixture(autouse=True)
def fused_everywhere(monkeypatch):
    monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("layout", ["nchw", "nlc"])
@pytest.mark.parametrize("name", sorted(NORMS))
def test_fused_path_matches_the_formula(name, layout, affine, dtype):
    _against_formula(name, layout, affine, dtype)


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_fused_ghost_batches_are_batchnorm_on_each_sub_batch(layout):
    _ghost_identity(layout)
    _ghost_last_of_one()


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("layout", ["nchw", "nlc"])
@pytest.mark.parametrize("name", sorted(NORMS))
def test_fused_and_composite_paths_agree_in_train_and_eval_mode(name, layout, train, monkeypatch):
    """The closed-form backwards against autograd through the composite path, with random
    parameters and running statistics, in eval mode too (the formula tests train, then only
    run forward in eval)."""
    if not supports(name, layout):
        pytest.skip(f"{name} has no meaning for layout {layout}")
    fused_layer = randomize(make(name, layout, torch.float64), seed=None, params=False)
    composite = copy.deepcopy(fused_layer)
    fused_layer.train(train), composite.train(train)
    _fused_then_composite(fused_layer, composite, sample(layout, torch.float64, seed=3), monkeypatch)
    for (pname, p), p2 in zip(fused_layer.named_parameters(), composite.parameters()):
        torch.testing.assert_close(p.grad, p2.grad, msg=f"grad of {pname}")
    for (bname, b), b2 in zip(fused_layer.named_buffers(), composite.buffers()):
        torch.testing.assert_close(b, b2, msg=f"buffer {bname}")


@pytest.mark.parametrize(
    "shape, dims",
    [((4, 6, 5, 3), (2, 3)), ((4, 6, 5, 3), (0, 2, 3)), ((3, 7, 8), (1,)), ((3, 7, 8), (2,)), ((3, 7, 8), (0, 1))],
)
def test_moments_are_mean_and_biased_variance_with_their_gradients(shape, dims):
    x = (torch.randn(shape, dtype=torch.float64) * 3 + 20).requires_grad_()  # an offset: no E[x^2] - mean^2
    mean, var = moments(x, dims)
    var_ref, mean_ref = torch.var_mean(x, dims, correction=0, keepdim=True)
    torch.testing.assert_close(mean, mean_ref)
    torch.testing.assert_close(var, var_ref)
    g_mean, g_var = torch.randn_like(mean), torch.randn_like(var)
    (grad,) = torch.autograd.grad((mean * g_mean).sum() + (var * g_var).sum(), x)
    (grad_ref,) = torch.autograd.grad((mean_ref * g_mean).sum() + (var_ref * g_var).sum(), x)
    torch.testing.assert_close(grad, grad_ref)


def test_raw_moments_of_constant_rows_have_zero_variance():
    x = torch.full((2, 3, 4, 4), 7.0)
    mean, var = raw_moments(x, (2, 3))
    assert torch.equal(mean, torch.full_like(mean, 7.0)) and torch.equal(var, torch.zeros_like(var))


def test_normalize_floor_passes_gradient_only_above_it_and_the_rest_to_the_floor():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    floor = torch.zeros(1, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    y = normalize(x, (2, 3), lambda m, v: (torch.rsqrt(v + 1e-5), -m * torch.rsqrt(v + 1e-5)), floor=floor)
    x_ref, floor_ref = x.detach().clone().requires_grad_(), floor.detach().clone().requires_grad_()
    var, mean = torch.var_mean(x_ref, (2, 3), correction=0, keepdim=True)
    y_ref = torch.maximum((x_ref - mean) * torch.rsqrt(var + 1e-5), floor_ref)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, (x, floor), g), torch.autograd.grad(y_ref, (x_ref, floor_ref), g))


def test_layer2d_on_channels_last_images_is_the_formula_on_the_native_rows():
    layer = build_norm("layer2d", 8).double()
    for p in layer.parameters():
        p.data.normal_()
    x = torch.randn(3, 8, 5, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = layer(x)
    assert y.is_contiguous(memory_format=torch.channels_last)  # the permuted view, no copy
    x_ref = x.detach().clone().requires_grad_()
    y_ref = REFERENCE["layer2d"](copy.deepcopy(layer), x_ref)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(y_ref, x_ref, g)[0])


@pytest.mark.slow
def test_under_torch_compile_the_fused_norms_are_the_plain_formula_and_agree_with_eager():
    torch.manual_seed(0)
    layer = build_norm("frn", 8)  # floor, learned factors: the fused path's every part
    compiled = torch.compile(copy.deepcopy(layer), dynamic=False)
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    g = torch.randn(4, 8, 6, 6)
    y, y_compiled = layer(x), compiled(x)
    torch.testing.assert_close(y_compiled, y)
    torch.testing.assert_close(torch.autograd.grad(y_compiled, x, g)[0], torch.autograd.grad(y, x, g)[0])


@pytest.mark.parametrize(
    "name, function, threshold, below, at",
    [
        ("bln_pooled", lambda: fused._Normalize, 4 * 8 * 4 * 4, (2, 8, 4, 4), (4, 8, 4, 4)),
        ("layer2d", lambda: layer2d._ChannelNorm, 8 * 2 * 8 * 4 * 4, (1, 8, 4, 4), (2, 8, 4, 4)),  # an eighth of it
    ],
)
def test_a_layer_takes_the_fused_path_only_from_its_threshold_on(name, function, threshold, below, at, monkeypatch):
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", "0")  # the PyTorch path's thresholds (the kernels': test_kernels.py)
    calls = []
    monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", threshold)
    monkeypatch.setattr(function(), "apply", lambda *a: calls.append(a) or a[0])
    layer = build_norm(name, 8)
    layer(torch.randn(below))
    assert not calls
    layer(torch.randn(at))
    assert len(calls) == 1


@pytest.mark.parametrize("shape", [(4, 32, 64), (2, 32, 4, 4, 4)])
@pytest.mark.parametrize("name", sorted(NORMS))
def test_fused_and_composite_paths_agree_on_images_of_other_ranks(name, shape, monkeypatch):
    """(N, C, L) and (N, C, D, H, W) pass check_input for the image layout: both paths take them."""
    if not supports(name, "nchw"):
        pytest.skip(f"{name} has no image layout")
    fused_layer = make(name, "nchw", torch.float64)
    _fused_then_composite(fused_layer, copy.deepcopy(fused_layer), torch.randn(shape, dtype=torch.float64), monkeypatch)


def _fused_then_composite(fused_layer, composite, x, monkeypatch):
    """Forward and backward of ``x`` through ``fused_layer`` (the fixture: every size takes the
    fused path), then through ``composite`` with the threshold out of reach: outputs and input
    gradients agree. The layers keep their parameters' gradients for the caller to compare."""
    x, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn_like(x)
    y = fused_layer(x)
    y.backward(g)
    monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", 1 << 60)
    y2 = composite(x2)
    y2.backward(g)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(x.grad, x2.grad)


def test_each_fast_path_is_registered_for_the_class_of_its_namesake_layer_only(monkeypatch):
    """norms/fast/<name>.py holds the fast path of norms/<name>.py's layer, for that class: a
    subclass, which may change the formula, runs its own formula at every size."""
    files = {p.stem for p in Path(fast.__file__).parent.glob("*.py")} - {"__init__", "normalize", "moments"}
    assert {cls.__module__.rsplit(".", 1)[1] for cls in fast.PATHS} == files
    assert all(
        fast.PATHS[cls].__module__ == f"normlab.norms.fast.{cls.__module__.rsplit('.', 1)[1]}" for cls in fast.PATHS
    )

    class Zeroed(NORMS["frn"]):
        def formula(self, x):
            return torch.zeros_like(x)

    monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", 0)
    x = torch.randn(2, 8, 4, 4)
    assert NORMS["frn"](8)(x).abs().sum() > 0
    assert torch.equal(Zeroed(8)(x), torch.zeros_like(x))
