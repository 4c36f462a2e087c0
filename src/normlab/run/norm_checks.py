"""What a norm must do to run in normlab, as checks: the built-in norms' tests and
``scripts/check_norm.py`` (a researcher's own norm, by dotted path) call these same functions.

Each check builds the layer through the factory (``name`` registered, or ``package.module.Class``)
and raises ``AssertionError`` with one line saying what is wrong. ``norm_problems`` runs them all
and returns those lines; the script adds a fast_dev_run of every task.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from normlab.callbacks.norm_stats import batch_statistics, precise_bn
from normlab.errors import ConfigError
from normlab.norms import LAYOUTS, build_norm, composite_only, supports
from normlab.norms.contract import declared

CHANNELS = 16  # divides the default groups of every built-in norm


def sample(layout: str, shape: tuple[int, ...] | None = None, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """Activations with an offset and a spread, as real ones have: (4, 16, 5, 6) images or (4, 7, 16) tokens."""
    shape = shape or ((4, CHANNELS, 5, 6) if layout == "nchw" else (4, 7, CHANNELS))
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5).to(dtype)


def build(name: str, layout: str, knobs: dict | None = None, shape=None) -> nn.Module:
    channels = CHANNELS if shape is None else shape[1 if layout == "nchw" else -1]
    return build_norm(name, channels, layout, **(knobs or {}))


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def check_layouts(name: str, knobs: dict | None = None) -> None:
    """It builds for every layout it declares in ``layouts``, and the factory refuses the others in one line."""
    for layout in LAYOUTS:
        try:
            build(name, layout, knobs)
        except Exception as err:
            refused = isinstance(err, ConfigError) and not supports(name, layout) and "\n" not in str(err)
            assert refused, f"building it for '{layout}' fails: {type(err).__name__}: {first_line(err)}"


def check_shapes_and_dtypes(name: str, layout: str, knobs: dict | None = None) -> None:
    """The input's shape and dtype out, finite, in float32 and float64, in training and eval mode."""
    for dtype in (torch.float32, torch.float64):
        layer = build(name, layout, knobs).to(dtype)
        for training in (True, False):
            x = sample(layout, dtype=dtype)
            y = layer.train(training)(x)
            mode = "training" if training else "eval"
            assert y.shape == x.shape and y.dtype == x.dtype, (
                f"in {mode} mode, input {tuple(x.shape)} {x.dtype} gives output {tuple(y.shape)} {y.dtype}"
            )
            assert torch.isfinite(y).all(), f"in {mode} mode, {x.dtype} input gives non-finite output"


def check_train_and_eval(name: str, layout: str, knobs: dict | None = None) -> None:
    """``batch_dependent`` tells the truth: in training, sample 0's output changes with the other
    samples exactly when it is declared. Eval mode gives one output per input and changes no buffer."""
    layer = build(name, layout, knobs).train()
    x, others = sample(layout), sample(layout, seed=1)
    others[0] = x[0]
    with torch.no_grad():
        moved = not torch.allclose(copy.deepcopy(layer)(x)[0], copy.deepcopy(layer)(others)[0])
        said = declared(layer, "batch_dependent")
        assert moved == said, (
            f"it declares batch_dependent={said}, but in training one sample's output "
            f"{'changes' if moved else 'does not change'} with the other samples"
        )
        layer(x)  # one training step, then eval mode
        before = {k: v.clone() for k, v in layer.state_dict().items()}
        layer.eval()
        assert torch.equal(layer(x), layer(x)), "in eval mode, one input gives two different outputs"
        changed = [k for k, v in layer.state_dict().items() if not torch.equal(v, before[k])]
        assert not changed, f"a forward in eval mode changes {', '.join(changed)}"


def gradient_penalty(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d/dx of |d loss / dx|^2: a gradient of a gradient, as WGAN-GP and R1 penalties take."""
    x = x.detach().requires_grad_()
    loss = (layer(x) * torch.linspace(-1, 1, x.shape[-1], dtype=x.dtype)).square().mean()
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), x)
    return gg


def check_double_backward(name: str, layout: str, knobs: dict | None = None, shape=None) -> None:
    """Gradients of gradients work, or refuse in one line naming ``composite_only`` (the fused
    paths' first-order backwards), and inside ``composite_only`` they work and agree."""
    layer, x = build(name, layout, knobs, shape).train(), sample(layout, shape)
    with composite_only():
        expected = gradient_penalty(layer, x)
    assert torch.isfinite(expected).all() and expected.abs().sum() > 0, "gradients of gradients are zero or not finite"
    try:
        found = gradient_penalty(layer, x)
    except RuntimeError as err:
        message = str(err)
        refused = "\n" not in message and "composite_only" in message and "create_graph" in message
        assert refused, f"gradients of gradients fail: {message[:200]}"
    else:
        torch.testing.assert_close(found, expected, rtol=1e-3, atol=1e-6)


def check_diagnostics_keep_state(name: str, layout: str, knobs: dict | None = None) -> None:
    """``mixing_weights()``, the batch-statistics evaluation and PreciseBN leave the layer as they
    found it: every parameter, buffer and mode, except PreciseBN's new running_mean and running_var."""
    model = nn.Sequential(build(name, layout, knobs))
    with torch.no_grad():
        model.train()(sample(layout))  # one training step first: counters and averages away from their start
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if declared(model[0], "mixing_weights"):
        model[0].mixing_weights()
    with torch.no_grad(), batch_statistics(model):
        model(sample(layout, seed=1))
    precise_bn(model, [sample(layout, seed=2), sample(layout, seed=3)], 2)
    renewed = ("running_mean", "running_var")
    changed = [k for k, v in model.state_dict().items() if not k.endswith(renewed) and not torch.equal(v, before[k])]
    assert not changed, f"the diagnostics change {', '.join(changed)}"
    assert not any(m.training for m in model.modules()), "the diagnostics leave the layer in training mode"


LAYER_CHECKS = (check_shapes_and_dtypes, check_train_and_eval, check_double_backward, check_diagnostics_keep_state)


def norm_problems(name: str, knobs: dict | None = None) -> list[str]:
    """Every check on every layout the norm declares: one line per failure (empty: it keeps the contract)."""
    try:
        layouts = [layout for layout in LAYOUTS if supports(name, layout)]
        check_layouts(name, knobs)
    except Exception as err:  # it does not import, breaks the contract, or fails to build
        return [first_line(err)]
    found = []
    for layout in layouts:
        for check in LAYER_CHECKS:
            try:
                check(name, layout, knobs)
            except Exception as err:  # a check's own sentence, or what the layer raised
                found.append(f"{check.__name__.removeprefix('check_')} ({layout}): {first_line(err)}")
    return found
