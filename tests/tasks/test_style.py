"""Style transfer: the transformation network keeps the image size, the perceptual loss matches
its formulas, the loss network stays frozen, every norm trains end to end, and a saved
checkpoint stylizes image files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from normlab.errors import ConfigError
from normlab.models import build_model
from normlab.models.loss_net import LossNetwork, build_loss_network, random_vgg
from normlab.norms import NORMS, norm_class, supports
from normlab.run import train
from normlab.run.config_check import check_config
from normlab.tasks.perceptual import PerceptualLoss, gram, total_variation

# Tiny images and networks: the whole pipeline in a second or two per run.
TINY = [
    "task=style",
    "model.width=0.25",
    "task.loss.width=0.125",
    "data.crop=16",
    "data.load_size=24",
    "data.eval_size=21",
    "data.style_size=24",
    "logger=csv",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors this small only pay for a second thread's synchronisation, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_net(norm: str = "instance"):
    return build_model({"name": "style_net", "width": 0.25}, {"name": norm})


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("size", [(16, 16), (17, 23), (5, 9), (30, 31)])
def test_output_shape_equals_input_shape(norm, size):
    x = torch.rand(2, 3, *size)
    y = tiny_net(norm)(x)
    assert y.shape == x.shape
    assert 0 <= y.min() and y.max() <= 1  # the scaled tanh


def test_too_small_images_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="at least 5x5"):
        tiny_net()(torch.rand(1, 3, 4, 8))


def test_batchnorm_trains_at_batch_1():
    """BatchNorm fails on a batch of one 1x1 map; the style net never shrinks a map that far."""
    net = tiny_net("batch").train()
    net(torch.rand(1, 3, 9, 9)).mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_gram_matrix_by_hand():
    # Two channels of a 2x2 map: c0 = [1, 2, 3, 4], c1 = [0, 1, 1, 0] (row-major).
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]])
    # <c0, c0> = 30, <c0, c1> = 2 + 3 = 5, <c1, c1> = 2; divided by C H W = 8 (Johnson et al. Eq. 3).
    expected = torch.tensor([[[30.0, 5.0], [5.0, 2.0]]]) / 8
    torch.testing.assert_close(gram(f), expected)


def test_total_variation_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # vertical differences 2, 3 -> mean square 6.5; horizontal 1, 2 -> 2.5
    torch.testing.assert_close(total_variation(x), torch.tensor(9.0))


def test_style_loss_is_zero_for_the_style_image_and_content_loss_for_the_content():
    net = LossNetwork(random_vgg(0.125), ["relu1_2", "relu2_2", "relu3_3"])
    loss = PerceptualLoss(net, "relu2_2", ["relu1_2", "relu3_3"], 1.0, 1.0, 0.0)
    style = torch.rand(1, 3, 24, 24)
    loss.set_style(style)
    assert loss(style, torch.rand(1, 3, 24, 24))["style"] < 1e-10
    other = torch.rand(1, 3, 24, 24)
    terms = loss(other, other)
    assert terms["content"] == 0 and terms["style"] > 0


def test_loss_network_is_frozen():
    loss = PerceptualLoss(
        build_loss_network("random_vgg", ["relu1_2", "relu2_2"], 0.125),
        "relu2_2",
        ["relu1_2", "relu2_2"],
        1.0,
        10.0,
        1.0,
    )
    loss.set_style(torch.rand(1, 3, 20, 20))
    net = tiny_net()
    before = {k: v.clone() for k, v in loss.net.state_dict().items()}
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    loss.train()  # what Lightning's model.train() does to every submodule
    x = torch.rand(2, 3, 20, 20)
    loss(net(x), x)["loss"].backward()
    opt.step()
    assert not loss.net.training
    assert all(not p.requires_grad and p.grad is None for p in loss.net.parameters())
    assert all(p.grad is not None for p in net.parameters()), "gradients must flow through the loss network"
    for k, v in loss.net.state_dict().items():
        assert torch.equal(v, before[k])


def test_random_loss_network_is_the_same_on_every_build_and_leaves_the_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = random_vgg(0.125), random_vgg(0.125)
    assert torch.equal(torch.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_vgg16_without_weights_offline_is_one_line_with_the_fix(monkeypatch):
    import urllib.error

    import torchvision.models

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "vgg16", offline)
    with pytest.raises(ConfigError, match="task.loss.network=random_vgg"):
        build_loss_network("vgg16", ["relu2_2"])


@pytest.mark.parametrize(
    "override,message",
    [
        ("model=resnet20", "Fix: set model=style_net"),
        ("data.crop=64", "data.crop=64 is larger than the stored images"),
        ("data.style=no_such_image", "skimage.data has no image 'no_such_image'"),
        ("data.val=[astronaut]", "astronaut is both a training and a held-out image"),
        ("task.loss.content_layer=relu9_9", "unknown loss layer 'relu9_9'"),
    ],
)
def test_bad_style_config_is_one_line_with_the_fix(compose, override, message):
    from normlab.tasks import build_task

    with pytest.raises(ConfigError, match=message):
        build_task(compose([*TINY, override]))


def train_ok(cfg) -> dict:
    """Train, then check what the run wrote: summary.json with every metric, and the grid."""
    train(cfg)
    run = Path(cfg.paths.output_dir)
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["task"] == "style" and s["model"] == "style_net"
    m = s["metrics"]
    for k in ("test/content", "test/style", "test/tv", "test/loss", "init/style", "photo/style", "test/style_drop"):
        assert isinstance(m[k], float), k
    assert m["test/style_drop"] == pytest.approx(1 - m["test/style"] / m["init/style"], rel=1e-4)
    assert (run / "style_grid.png").is_file()
    return s


@pytest.mark.parametrize("name,batch", [(n, 2) for n in sorted(NORMS)] + [("batch", 1)])
def test_every_norm_trains(compose, name, batch):
    if not supports(name, "nchw"):
        pytest.skip(f"{name} has no meaning for images")
    cfg = compose([*TINY, f"norm={name}", f"data.batch={batch}", "debug=fast_dev_run"])
    if getattr(norm_class(name), "one_input_size", False) and cfg.data.crop != cfg.data.eval_size:
        with pytest.raises(ConfigError, match="one input size"):  # refused before training
            check_config(cfg)
        cfg = compose(
            [*TINY, f"norm={name}", f"data.batch={batch}", "debug=fast_dev_run", f"data.eval_size={cfg.data.crop}"]
        )
    s = train_ok(cfg)
    assert s["norm"] == name and s["batch"] == batch


def test_wandb_gets_the_grid_of_every_epoch(compose):
    cfg = compose([*TINY, "norm=instance", "debug=fast_dev_run", "trainer.max_epochs=2", "logger=wandb"])
    s = train_ok(cfg)
    grids = list(Path(s["wandb_dir"]).glob("files/media/images/held_out/*.png"))
    assert len(grids) == 2, "one grid per epoch in W&B"


@pytest.fixture
def trained_run(compose):
    """A style run with checkpoints: 3 steps, one validation."""
    cfg = compose([*TINY, "norm=instance", "trainer.max_epochs=1", "data.steps_per_epoch=3", "data.batch=2"])
    train_ok(cfg)
    return Path(cfg.paths.output_dir)


def test_stylize_round_trip_on_a_saved_checkpoint(trained_run, tmp_path):
    from normlab.tasks.stylize import main

    ckpt = trained_run / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert not [k for k in saved["state_dict"] if k.startswith("loss.")], "the fixed loss network is not saved"

    src = torch.randint(0, 256, (29, 34, 3), dtype=torch.uint8)  # odd height, (H, W, 3)
    Image.fromarray(src.numpy()).save(tmp_path / "in.png")
    assert main(["--ckpt", str(ckpt), "--input", str(tmp_path / "in.png"), "--output", str(tmp_path / "out.png")]) == 0
    out = torch.from_numpy(np.array(Image.open(tmp_path / "out.png")))
    assert out.shape == src.shape

    # The same network, rebuilt by hand from what the checkpoint stores.
    net = build_model(saved["style_net"]["model"], saved["style_net"]["norm"])
    net.load_state_dict({k[6:]: v for k, v in saved["state_dict"].items() if k.startswith("model.")})
    with torch.no_grad():
        expected = net.eval()(src.permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0)
    assert (out.float() / 255 - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_stylize_refuses_what_is_not_a_style_checkpoint(tmp_path, capsys):
    from normlab.tasks.stylize import main

    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    assert main(["--ckpt", str(tmp_path / "other.ckpt"), "--input", "x.png", "--output", "y.png"]) == 2
    assert "not a task=style checkpoint" in capsys.readouterr().err


def test_comparison_grid_has_a_column_per_run(trained_run, tmp_path):
    from normlab.report.style_grid import main

    out = tmp_path / "grid.png"
    assert main([str(trained_run), str(trained_run), "--output", str(out), "--tile", "32"]) == 0
    w, h = Image.open(out).size
    gap, head, rows, cols = 4, 18, 3, 3  # 3 held-out photographs; content + 2 runs
    assert (w, h) == (cols * (32 + gap) + gap, head + rows * (32 + gap) + gap)
