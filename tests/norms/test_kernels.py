"""The C kernels (normlab.norms.fast.kernels) against the layers' PyTorch path, which the formula tests
check in fp64: every norm that has a kernel, fp32, train and eval, images of three ranks, with
and without affine, outputs, gradients and running statistics. And what happens around them:
threads, NaN, no compiler, the switch that turns them off."""

from __future__ import annotations

import copy

import pytest
import torch
from random_state import randomize

from normlab.norms import build_norm, fast, knobs_of
from normlab.norms.fast import evonorm_b0, evonorm_s0, layer2d
from normlab.norms.fast.kernels import build

# norm -> its kernel source, and the kernel functions its forward and backward must call
KERNEL_NORMS = {
    "bln_pooled": ("rows", "rows_affine", "rows_dx"),
    "batch_renorm": ("rows", "rows_affine", "rows_dx"),
    "ghost_batch": ("rows", "rows_affine", "rows_dx"),
    "frn": ("rows", "rows_affine", "rows_dx"),
    "rms": ("rows", "rows_affine", "rows_dx"),
    "switchable": ("rows", "rows_affine", "rows_dx"),
    "batch_instance": ("rows", "rows_affine", "rows_dx"),
    "evonorm_b0": ("evonorm", "evonorm_b0_forward", "evonorm_b0_dx"),
    "evonorm_s0": ("evonorm", "evonorm_s0_forward", "evonorm_s0_backward"),
    "layer2d": ("layer2d", "layer2d_forward", "layer2d_backward"),
}
EVAL_IS_BATCHNORM = {"batch_renorm", "ghost_batch"}  # eval: native BatchNorm on the running statistics
SHAPES = [(8, 16, 6, 5), (4, 16, 30), (4, 16, 3, 4, 5)]
TOL = dict(rtol=1e-4, atol=2e-5)

needs_compiler = pytest.mark.skipif(build._compiler() is None, reason="no C compiler on this machine")


@pytest.fixture(autouse=True)
def fused_everywhere(monkeypatch):
    monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", 0)
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", "1")


@pytest.fixture
def calls(monkeypatch):
    """The names of the kernel functions called, through a spy on the loaded libraries."""
    seen, real = [], build.load

    class Spy:
        def __init__(self, lib):
            self.lib = lib

        def __getattr__(self, fn):
            seen.append(fn)
            return getattr(self.lib, fn)

    monkeypatch.setattr(build, "load", lambda name: Spy(real(name)) if real(name) is not None else None)
    return seen


def make(name, affine=True, seed=0):
    knobs = {"affine": affine} if "affine" in knobs_of(name) else {}
    if name == "ghost_batch":
        knobs["virtual_batch"] = 2  # several ghost batches in every sample shape
    return randomize(build_norm(name, 16, "nchw", **knobs), seed=seed)


def run(layer, x, g):
    x = x.clone().requires_grad_()
    y = layer(x)
    y.backward(g)
    return y.detach(), x.grad, [p.grad for p in layer.parameters()]


@needs_compiler
@pytest.mark.parametrize("source", sorted({s for s, _, _ in KERNEL_NORMS.values()}))
def test_every_kernel_source_builds_here(source):
    assert build.load(source) is not None, f"{source}.c did not build; see the warning above"


@needs_compiler
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=["4d", "3d", "5d"])
@pytest.mark.parametrize("name", sorted(KERNEL_NORMS))
def test_kernels_compute_what_the_pytorch_path_computes(name, shape, train, affine, calls, monkeypatch):
    if not affine and "affine" not in knobs_of(name):
        pytest.skip(f"{name} is always affine")
    with_kernels = make(name, affine).train(train)
    plain = copy.deepcopy(with_kernels)
    x = torch.randn(shape) * 2 + 0.5
    g = torch.randn(shape)
    y, dx, grads = run(with_kernels, x, g)
    _, forward_fn, backward_fn = KERNEL_NORMS[name]
    if not train and name in EVAL_IS_BATCHNORM:
        assert not calls
    else:
        assert forward_fn in calls and backward_fn in calls, f"{name} did not take its kernels: {calls}"
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", "0")
    calls.clear()
    y2, dx2, grads2 = run(plain, x, g)
    assert not calls
    torch.testing.assert_close(y, y2, **TOL)
    torch.testing.assert_close(dx, dx2, **TOL)
    for (pname, _), a, b in zip(with_kernels.named_parameters(), grads, grads2):
        torch.testing.assert_close(a, b, **TOL, msg=f"grad of {pname}")
    for (bname, a), b in zip(with_kernels.named_buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, **TOL, msg=f"buffer {bname}")


@needs_compiler
def test_evonorm_s0_sigmoid_holds_over_the_whole_float_range(monkeypatch):
    """The kernels' own exp (kernels.h): where the sigmoid bends, within a few ulp of the fp64
    formula (as PyTorch's fp32 path is); where it saturates both ways, as PyTorch's path."""
    bend = make("evonorm_s0", affine=False)
    x = torch.linspace(-8, 8, 16 * 4 * 64).view(4, 16, 8, 8)
    y = bend(x)
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", "0")
    torch.testing.assert_close(y.double(), bend.double()(x.double()), rtol=1e-6, atol=1e-7)
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", "1")
    layer = make("evonorm_s0")
    x = torch.linspace(-120, 120, 16 * 4 * 64).view(4, 16, 8, 8)
    g = torch.randn_like(x)
    y, dx, grads = run(layer, x, g)
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", "0")
    y2, dx2, grads2 = run(copy.deepcopy(layer), x, g)
    torch.testing.assert_close(y, y2, **TOL)
    torch.testing.assert_close(dx, dx2, **TOL)
    for a, b in zip(grads, grads2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_compiler
def test_evonorm_s0_backward_twice_through_one_graph_gives_the_same_gradients():
    """The first backward writes dx over the sigmoid kept from forward; a second one through the
    same graph (retain_graph=True, as gradient penalties do) must not read dx for it."""
    layer = make("evonorm_s0")
    x = (torch.randn(4, 16, 6, 5) * 2).requires_grad_()
    y = layer(x)
    g = torch.randn_like(y)
    first = torch.autograd.grad(y, [x, *layer.parameters()], g, retain_graph=True)
    second = torch.autograd.grad(y, [x, *layer.parameters()], g)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, **TOL)


@needs_compiler
@pytest.mark.parametrize("name", sorted(KERNEL_NORMS))
def test_threads_split_the_blocks_without_changing_a_bit(name):
    layer = make(name)
    x, g = torch.randn(8, 16, 6, 5), torch.randn(8, 16, 6, 5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(copy.deepcopy(layer), x, g)
        torch.set_num_threads(2)
        two = run(copy.deepcopy(layer), x, g)
    finally:
        torch.set_num_threads(before)
    for a, b in zip([one[0], one[1], *one[2]], [two[0], two[1], *two[2]]):
        assert torch.equal(a, b)


@needs_compiler
@pytest.mark.parametrize("name", sorted(KERNEL_NORMS))
def test_a_nan_in_the_input_reaches_the_output(name):
    """A diverged run must show NaN, as PyTorch's kernels do, not a finite number."""
    x = torch.randn(4, 16, 6, 5)
    x[1, 3, 2, 2] = float("nan")
    assert torch.isnan(make(name)(x)[1, 3, 2, 2])


def test_without_a_working_compiler_the_norms_warn_and_run_their_pytorch_path(monkeypatch, tmp_path):
    x, g = torch.randn(4, 16, 6, 5), torch.randn(4, 16, 6, 5)
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", "0")
    expected = run(make("evonorm_s0"), x, g)
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", "1")
    monkeypatch.setenv("NORMLAB_CACHE", str(tmp_path))  # nothing built yet
    monkeypatch.setenv("CC", "false")  # a compiler that always fails
    build.load.cache_clear()
    try:
        with pytest.warns(UserWarning, match="building the evonorm kernels failed"):
            got = run(make("evonorm_s0"), x, g)
        monkeypatch.setattr(build, "_compiler", lambda: None)
        build.load.cache_clear()
        with pytest.warns(UserWarning, match="no C compiler"):
            assert build.load("rows") is None
    finally:
        build.load.cache_clear()  # the real libraries for the tests that follow
    assert not list(tmp_path.rglob("*.so"))
    for a, b in zip([expected[0], expected[1], *expected[2]], [got[0], got[1], *got[2]]):
        assert torch.equal(a, b)


@needs_compiler
def test_a_cache_that_cannot_be_written_warns_and_leaves_the_pytorch_path(monkeypatch, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("NORMLAB_CACHE", str(blocker / "cache"))  # below a file: no folder can be made
    build.load.cache_clear()
    try:
        with pytest.warns(UserWarning, match="NORMLAB_CACHE"):
            assert build.load("rows") is None
        x = torch.randn(4, 16, 6, 5)
        torch.testing.assert_close(make("frn")(x), make("frn")(x))  # runs, on the PyTorch path
    finally:
        build.load.cache_clear()


def test_kernels_take_only_contiguous_fp32_cpu_tensors_and_can_be_turned_off(monkeypatch):
    x = torch.randn(2, 4, 3, 3)
    assert build.usable(x)
    assert not build.usable(x.double())
    assert not build.usable(x.bfloat16())
    assert not build.usable(x.contiguous(memory_format=torch.channels_last))
    with build.off():
        assert not build.usable(x)
    assert build.usable(x)
    monkeypatch.setenv("NORMLAB_CPU_KERNELS", "0")
    assert not build.usable(x)


@needs_compiler
@pytest.mark.parametrize(
    "name, function, threshold, small",
    [
        ("evonorm_s0", lambda: evonorm_s0._EvoNormS0, 1 << 60, True),  # the kernel at every size
        ("layer2d", lambda: layer2d._ChannelNorm, 1 << 60, True),
        ("evonorm_b0", lambda: evonorm_b0._EvoNormB0, 4 * 128, False),  # from a quarter of the threshold: 128
    ],
)
def test_with_kernels_a_layer_takes_its_fused_path_from_its_own_threshold(
    name, function, threshold, small, monkeypatch
):
    calls = []
    monkeypatch.setattr(fast, "FUSED_MIN_ELEMENTS", threshold)
    monkeypatch.setattr(function(), "apply", lambda *a: calls.append(a) or a[0])
    layer = build_norm(name, 8)
    layer(torch.randn(2, 8, 2, 2))  # 64 elements
    assert len(calls) == int(small)
    layer(torch.randn(1, 8, 4, 4))  # 128
    assert len(calls) == int(small) + 1
