"""apply_act=False: the normalization-activation layers' form where no activation follows, and
``activates``, by which the models know whether a ReLU belongs after a norm."""

from __future__ import annotations

import pytest
import torch

from normlab.errors import ConfigError
from normlab.norms import NORMS, activates, build_norm, fast, knobs_of, linear_norm, norm_layer, supports
from normlab.norms.contract import declared
from normlab.norms.reference import REFERENCE

WITH_ACT = [name for name in sorted(NORMS) if declared(NORMS[name], "activates")]  # evonorm_b0, evonorm_s0, frn
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=1e-5)}


def timm_frn_without_tlu(x, weight, bias, eps):
    # timm/layers/filter_response_norm.py, FilterResponseNormTlu2d.forward with apply_act=False (tau is None):
    # x * inv_instance_rms(x, eps), inv_instance_rms = rsqrt(mean(x^2 over (H, W)) + eps), then x * weight + bias.
    v = (1, -1, 1, 1)
    x = x * x.square().mean(dim=(2, 3), keepdim=True).add(eps).rsqrt()
    return x * weight.view(v) + bias.view(v)


def timm_evonorm_without_act(x, weight, bias):
    # timm/layers/evo_norm.py, EvoNorm2dB0.forward and EvoNorm2dS0.forward with apply_act=False (self.v is None):
    # the normalization is skipped, x * weight + bias only; as tensorflow/tpu models/official/resnet/
    # resnet_model.py, evonorm(..., nonlinearity=False): "apply an affine transform only".
    v = (1, -1, 1, 1)
    return x * weight.view(v) + bias.view(v)


def without_act(name, dtype):
    m = build_norm(name, 16, "nchw", apply_act=False).to(dtype)
    torch.manual_seed(1)
    for p in m.parameters():  # not the init values, so a missing gamma or beta would show
        p.data.normal_()
    return m


@pytest.mark.parametrize("path", ["composite", "fused"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", WITH_ACT)
def test_without_act_is_timms_formula_forward_and_backward(name, dtype, path, monkeypatch):
    if path == "fused":
        monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", 0)
    m = without_act(name, dtype)
    x = (torch.randn(4, 16, 5, 6, dtype=torch.float64) * 2 + 0.5).to(dtype).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    w, b = (t.detach().clone().requires_grad_() for t in (m.weight, m.bias))
    ref = timm_frn_without_tlu(xr, w, b, m.eps) if name == "frn" else timm_evonorm_without_act(xr, w, b)
    for mode in ("train", "eval"):
        getattr(m, mode)()
        torch.testing.assert_close(m(x), ref, **TOL[dtype])
    dy = torch.randn_like(ref)
    m(x).backward(dy)
    ref.backward(dy)
    for got, want in ((x.grad, xr.grad), (m.weight.grad, w.grad), (m.bias.grad, b.grad)):
        torch.testing.assert_close(got, want, **TOL[dtype])
    assert not torch.allclose(build_norm(name, 16, "nchw").to(dtype).eval()(x), m.eval()(x)), "the activation is gone"


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
@pytest.mark.parametrize("name", WITH_ACT)
def test_without_act_has_no_activation_parameters_and_matches_the_reference(name, layout):
    if not supports(name, layout):
        pytest.skip(f"{name} has no meaning for layout {layout}")
    m = build_norm(name, 16, layout, apply_act=False)
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    assert not list(m.buffers()), "no statistics to keep: EvoNorm-B0 without its activation uses no batch"
    assert not m.activates and not m.batch_dependent
    x = torch.randn((3, 16, 4, 5) if layout == "nchw" else (3, 7, 16), dtype=torch.float64)
    torch.testing.assert_close(m.double()(x), REFERENCE[name](m, x))


def test_evonorm_b0_without_act_takes_a_batch_of_one_value_per_channel():
    m = build_norm("evonorm_b0", 4, apply_act=False).train()  # with its activation: refused (batch statistics)
    x = torch.randn(1, 4, 1, 1)
    torch.testing.assert_close(m(x), x)
    with pytest.raises(ConfigError, match="one value per channel"):
        build_norm("evonorm_b0", 4).train()(x)


@pytest.mark.parametrize("name", sorted(NORMS))
def test_every_norm_says_whether_it_activates(name):
    layout = "nchw" if supports(name, "nchw") else "nlc"
    knobs = {"num_groups": 4} if "num_groups" in knobs_of(name) else {}
    make = norm_layer(name, layout, **knobs)
    assert activates(make(16)) == (name in WITH_ACT)
    assert ("apply_act" in knobs_of(name)) == (name in WITH_ACT)
    last = linear_norm(make, 16)
    assert not activates(last)
    if name not in WITH_ACT:  # every other norm: the same layer where no activation follows
        same = make(16)
        assert type(last) is type(same) and last.state_dict().keys() == same.state_dict().keys()
