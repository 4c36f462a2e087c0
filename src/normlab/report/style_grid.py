"""Compare style runs side by side: one row per image, the content first, then one column per run.

    python scripts/style_grid.py logs/multiruns/<sweep>/* --output style_norms.png
    python scripts/style_grid.py run_a run_b --input a.jpg b.jpg --size 256

Each run is stylized from its ``checkpoints/last.ckpt`` in eval mode; columns are labelled with
the run's norm and batch from its ``summary.json``. Without ``--input`` the images are the
held-out images of the first run's data config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from normlab.data.images import grid, read_image, resize_short, save_png, to_float
from normlab.data.style_module import build_style_datamodule
from normlab.errors import ConfigError
from normlab.tasks.stylize import load_style_net, stylize


def run_label(run: Path) -> str:
    summary = run / "summary.json"
    if not summary.is_file():
        return run.name
    s = json.loads(summary.read_text())
    return f"{s['norm']} b={s['batch']}"


def held_out_images(run: Path) -> list[torch.Tensor]:
    """The held-out images of a run, rebuilt from the data config in its summary.json."""
    summary = run / "summary.json"
    if not summary.is_file():
        raise ConfigError(f"{run} has no summary.json to read the held-out images from. Fix: pass --input <images>.")
    config = json.loads(summary.read_text())["config"]
    data = build_style_datamodule(config["data"], config["seed"])
    data.setup()
    return [img for img in data.images.val]


def comparison_grid(runs: list[Path], images: list[torch.Tensor], tile: int = 256) -> torch.Tensor:
    """``images`` (uint8) as rows; the content, then each run's stylization, as columns."""
    nets = [load_style_net(run / "checkpoints" / "last.ckpt") for run in runs]
    rows = [[to_float(img)] + [stylize(net, img) for net in nets] for img in images]
    return grid(rows, header=["content"] + [run_label(run) for run in runs], tile=tile)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories of task=style runs")
    p.add_argument("--output", default="style_grid.png", help="where to write the PNG")
    p.add_argument("--input", nargs="*", default=None, help="image files; default: the runs' held-out images")
    p.add_argument("--size", type=int, default=None, help="resize the inputs' shorter side to this many pixels")
    p.add_argument("--tile", type=int, default=256, help="pixels per grid cell")
    args = p.parse_args(argv)
    try:
        images = [read_image(f) for f in args.input] if args.input else held_out_images(args.runs[0])
        if args.size:
            images = [resize_short(img, args.size) for img in images]
        out = save_png(comparison_grid(args.runs, images, args.tile), args.output)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0
