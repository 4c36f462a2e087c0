"""Apply a trained style network to image files.

    python scripts/stylize.py --ckpt logs/runs/<run>/checkpoints/last.ckpt --input a.jpg --output b.png

A style-task checkpoint carries the model and norm config it was built from, so the network is
rebuilt without the run's config files; the network is fully convolutional, so any image size
works (``--size`` rescales the input first: the texture's scale is relative to the pixels).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from normlab.data.images import read_image, resize_short, save_png, to_float
from normlab.errors import ConfigError
from normlab.models import build_model


def load_style_net(ckpt_path: str | Path) -> nn.Module:
    """The transformation network of a style-task checkpoint, in eval mode, on the CPU."""
    if not Path(ckpt_path).is_file():
        raise ConfigError(
            f"no checkpoint at {ckpt_path}. Fix: pass <run dir>/checkpoints/last.ckpt of a task=style run."
        )
    # weights_only=False: Lightning checkpoints hold plain Python objects besides tensors; only
    # load checkpoints you trust.
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if "style_net" not in ckpt:
        raise ConfigError(f"{ckpt_path} is not a task=style checkpoint. Fix: pass the checkpoint of a style run.")
    cfg = ckpt["style_net"]
    net = build_model(cfg["model"], cfg["norm"])
    prefix = "model."
    state = {
        k[len(prefix) :].replace("_orig_mod.", ""): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)
    }
    net.load_state_dict(state)
    return net.eval()


@torch.no_grad()
def stylize(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """uint8 ``(3, H, W)`` -> float ``(3, H, W)`` in [0, 1]."""
    return net(to_float(image)[None])[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="checkpoint of a task=style run, e.g. <run>/checkpoints/last.ckpt")
    p.add_argument("--input", required=True, help="image file to stylize (JPEG, PNG, ...)")
    p.add_argument("--output", required=True, help="where to write the stylized PNG")
    p.add_argument("--size", type=int, default=None, help="resize the shorter side to this many pixels first")
    args = p.parse_args(argv)
    try:
        net = load_style_net(args.ckpt)
        image = read_image(args.input)
        if args.size:
            image = resize_short(image, args.size)
        out = save_png(stylize(net, image), args.output)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0
