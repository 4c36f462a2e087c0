"""Bad inputs give one line that says what is wrong and how to fix it, before anything trains.

Configs (checked by ``check_config`` before the first step), models (GroupNorm that does not fit
a layer), data (absent, too small) and tensors (shapes and dtypes no norm can take); and a
property test that feeds random shapes and dtypes to every registered norm.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from normlab.errors import ConfigError
from normlab.models import build_model
from normlab.norms import NORMS, build_norm, norm_class, supports
from normlab.norms.layout import spatial_size
from normlab.run.config_check import check_config

CONFIG_CASES = {
    "unknown norm": (["norm.name=grop"], ["unknown norm 'grop'", "Did you mean 'group'?", "Fix:"]),
    "unknown model": (["model.name=resnt20"], ["unknown model 'resnt20'", "Did you mean 'resnet20'?"]),
    "unknown task": (["task.name=clasify"], ["unknown task 'clasify'", "Did you mean 'classify'?"]),
    "unknown dataset": (["data.name=mnist"], ["unknown dataset for task=classify 'mnist'", "'mnist5k'"]),
    "dataset of another task": (["data=shakespeare"], ["unknown dataset for task=classify 'shakespeare'"]),
    "data.root unset": (["data=image_folder"], ["data.root has no value", "Fix: add data.root=<value>"]),
    "batch 0": (["data.batch=0"], ["data.batch=0 is not a batch size", "Fix: set data.batch to 1 or more"]),
    "eval batch 0": (["data.eval_batch=0"], ["data.eval_batch=0 is not a batch size"]),
    "subset 0": (["data.subset=0"], ["data.subset=0 is not a number of training images"]),
    "lr 0": (["task.optim.lr=0"], ["task.optim.lr=0 is not a learning rate", "positive number"]),
    "lr negative": (["task.optim.lr=-0.1"], ["task.optim.lr=-0.1 is not a learning rate"]),
    "unknown optimizer": (["task.optim.name=adam"], ["unknown optimizer 'adam'", "sgd or adamw"]),
    "unknown lr scaling": (["task.optim.lr_scaling=sqrt"], ["unknown lr_scaling 'sqrt'"]),
    "negative momentum": (["task.optim.momentum=-1"], ["task.optim is not valid", "momentum"]),
    "warmup over 1": (["task.optim.warmup=2"], ["task.optim.warmup=2 is not a fraction"]),
    "unknown schedule": (["task.optim.schedule=linear"], ["task.optim.schedule=linear is not a schedule", "one_cycle"]),
    "one-cycle without a rise": (["task.optim.schedule=one_cycle", "task.optim.warmup=0"], ["needs a rise"]),
    "max_epochs 0": (["trainer.max_epochs=0"], ["trainer.max_epochs=0 is not a number of epochs"]),
    "max_steps 0": (["trainer.max_steps=0"], ["trainer.max_steps=0 is not a number of steps"]),
    "unknown trainer option": (
        ["+trainer.max_epoch=3"],
        ["unknown trainer option 'max_epoch'", "Did you mean 'max_epochs'?"],
    ),
    "unknown logger": (["+logger.mlflow={}"], ["unknown logger 'mlflow'"]),
    "unknown W&B mode": (["logger.wandb.mode=onlin"], ["logger.wandb.mode=onlin is not a W&B mode"]),
    "negative checkpoint interval": (["checkpoint.every_n_steps=-1"], ["checkpoint.every_n_steps=-1"]),
    "missing checkpoint file": (
        ["ckpt_path=/no/such/file.ckpt"],
        ["ckpt_path=/no/such/file.ckpt is not a file", "resume=<run dir>"],
    ),
    "zero threads": (["threads=0"], ["threads=0 is not a number of CPU threads"]),
    "own norm without a target": (["norm=custom"], ["norm.target has no value", "Fix: add norm.target=<value>"]),
    "own norm that does not import": (
        ["norm=custom", "norm.target=no_such_pkg.Norm"],
        ["norm.target=no_such_pkg.Norm does not import", "No module named"],
    ),
    "own norm that breaks the contract": (
        ["norm=custom", "norm.target=torch.nn.Linear"],
        ["norm.target=torch.nn.Linear breaks the norm contract", "`axes`", "scripts/check_norm.py torch.nn.Linear"],
    ),
}


@pytest.mark.parametrize("overrides,fragments", CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_bad_config_is_one_line_with_the_fix(compose, overrides, fragments):
    with pytest.raises(ConfigError) as info:
        check_config(compose(overrides))
    message = str(info.value)
    assert "\n" not in message and "Fix" in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_trainer_without_a_gpu(compose):
    with pytest.raises(ConfigError, match="torch sees no GPU on this machine. Fix: use trainer=cpu"):
        check_config(compose(["trainer=gpu"]))


def test_a_norm_without_meaning_for_the_layout_is_refused(compose, monkeypatch):
    monkeypatch.setattr(norm_class("batch"), "layouts", ("nchw",), raising=False)  # as a layer for images only
    with pytest.raises(ConfigError, match="norm 'batch' has no meaning for layout 'nlc'"):
        check_config(compose(["task=lm", "norm=batch"]))


def test_unset_data_root_is_a_config_error_not_an_omegaconf_traceback(compose):
    from normlab.run import train

    with pytest.raises(ConfigError, match="data.root has no value"):
        train(compose(["data=image_folder", "logger=none"]))


@pytest.mark.parametrize(
    "knobs,fragments",
    [
        (
            {"num_groups": 3},
            [
                "GroupNorm with num_groups=3 does not divide the channels of 19 layer(s) of resnet20",
                "stem.1 (16 channels)",
                "blocks.0.norm1 (16 channels)",
                "and 16 more",
                "Fix: set norm.num_groups to one of 1, 2, 4, 8, 16",
                "(16, 32, 64)",
            ],
        ),
        ({"num_groups": 32}, ["does not divide the channels of 7 layer(s)", "stem.1 (16 channels)", "and 4 more"]),
        (
            {"num_groups": None, "group_size": 5},
            ["GroupNorm with group_size=5", "norm.group_size to one of 1, 2, 4, 8, 16"],
        ),
    ],
)
def test_groupnorm_that_does_not_fit_names_the_layers_and_the_counts_that_do(knobs, fragments):
    with pytest.raises(ConfigError) as info:
        build_model({"name": "resnet20"}, {"name": "group", **knobs}, num_classes=10, in_channels=1)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_a_trainer_value_lightning_refuses(compose, tmp_path):
    from normlab.run.trainer import build_trainer

    with pytest.raises(ConfigError, match="the trainer config is not valid: .*precision.*Fix: correct that trainer"):
        build_trainer(compose(["trainer.precision=17"]), tmp_path, [])


def test_a_model_option_it_does_not_take():
    with pytest.raises(ConfigError, match="model 'gpt' does not take 'num_classes'"):
        build_model({"name": "gpt"}, {"name": "layer"}, num_classes=10)


def test_subset_larger_than_the_training_set():
    from normlab.data import build_image_datamodule

    data = build_image_datamodule({"name": "mnist5k", "batch": 8, "subset": 99999}, seed=0)
    with pytest.raises(ConfigError, match="data.subset=99999 is more than the 4000 training images"):
        data.setup()


def test_dataset_absent_offline(tmp_path):
    from normlab.data.cifar import load_cifar
    from normlab.data.folder import load_image_folder

    with pytest.raises(ConfigError, match="could not be downloaded.*Fix: run once online"):
        load_cifar("cifar10", str(tmp_path), download=False)
    with pytest.raises(ConfigError, match="has no train/ and test/ folders"):
        load_image_folder(str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "x,fragment",
    [
        (torch.randn(1, 4, 1, 1), "takes statistics across the batch, and input of shape (1, 4, 1, 1) has one value"),
        (torch.zeros(2, 4, 3, 3, dtype=torch.uint8), "expects floating-point input, got torch.uint8"),
        (torch.randn(2, 5, 3, 3), "expects input of shape (N, 4, H, W)"),
        (torch.randn(2, 4), "expects input of shape (N, 4, H, W) for layout 'nchw', got (2, 4)"),
    ],
)
def test_tensors_no_norm_can_take(x, fragment):
    with pytest.raises(ConfigError) as info:
        build_norm("batch", 4).train()(x)
    assert fragment in str(info.value)


# --- every registered norm, random shapes and dtypes ----------------------------------------

DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def uses_batch_statistics(layer) -> bool:
    return getattr(layer, "batch_dependent", False) and (
        layer.training or getattr(layer, "track_running_stats", True) is False
    )


@st.composite
def norm_and_input(draw, name):
    layout = draw(st.sampled_from([lay for lay in ("nchw", "nlc") if supports(name, lay)]))
    channels = draw(st.integers(1, 12))
    knobs = {}
    if name == "group":
        knobs["num_groups"] = draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0]))
    n = draw(st.integers(1, 4))
    dims = (draw(st.integers(1, 4)), draw(st.integers(1, 4))) if layout == "nchw" else (draw(st.integers(1, 6)),)
    shape = (n, channels, *dims) if layout == "nchw" else (n, dims[0], channels)
    return layout, channels, knobs, shape, draw(st.sampled_from(DTYPES)), draw(st.booleans()), draw(st.integers(0, 99))


def degenerate(layer, x, layout, channels, knobs) -> bool:
    """Inputs that leave a norm one value per statistic: a 1 x 1 image or a 1-token sequence, one
    channel (per group), or a batch statistic over a single value."""
    one_group_channel = layout == "nlc" and knobs.get("num_groups") == channels
    return (
        spatial_size(x, layout) == 1
        or channels == 1
        or one_group_channel
        or (uses_batch_statistics(layer) and x.numel() // channels < 2)
    )


@pytest.mark.parametrize("name", sorted(NORMS))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_norm_gives_finite_outputs_of_the_same_shape_or_a_config_error(name, data):
    layout, channels, knobs, shape, dtype, training, seed = data.draw(norm_and_input(name))
    try:
        layer = build_norm(name, channels, layout, **knobs).to(dtype).train(training)
    except ConfigError:
        return  # a width the norm cannot take (GroupNorm-based norms and C = 1) is refused when built
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    try:
        with torch.no_grad():
            y = layer(x)
    except ConfigError as err:
        assert degenerate(layer, x, layout, channels, knobs), f"{name} refused a valid input {shape}: {err}"
        assert "one value" in str(err)
        return
    assert y.shape == x.shape
    assert torch.isfinite(y.float()).all(), f"{name} gave non-finite output for {shape} {dtype}"


@st.composite
def bad_input(draw, layout, channels):
    kind = draw(st.sampled_from(["channels", "rank", "integers"]))
    n = draw(st.integers(1, 3))
    if kind == "channels":  # a channel count the layer was not built for
        c = channels + draw(st.integers(1, 4))
        return torch.randn(n, c, 3, 3) if layout == "nchw" else torch.randn(n, 5, c)
    if kind == "rank":  # (N, C) for images, (N, C, H, W) for tokens
        return torch.randn(n, channels) if layout == "nchw" else torch.randn(n, 2, 2, channels)
    shape = (n, channels, 3, 3) if layout == "nchw" else (n, 5, channels)
    return torch.randint(0, 255, shape, dtype=draw(st.sampled_from([torch.uint8, torch.int64])))


@pytest.mark.parametrize("name", sorted(NORMS))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_every_norm_refuses_a_bad_input_with_a_config_error(name, data):
    layout = data.draw(st.sampled_from([lay for lay in ("nchw", "nlc") if supports(name, lay)]))
    channels = data.draw(st.sampled_from([8, 16]))  # what every norm takes by default (GroupNorm: 8 groups)
    layer = build_norm(name, channels, layout, **({"num_groups": 2} if name == "group" else {}))
    x = data.draw(bad_input(layout, channels))
    assume(x.numel() > 0)
    with pytest.raises(ConfigError):  # never a torch error from inside a kernel
        layer.train(data.draw(st.booleans()))(x)
