"""Image files in and out, and image grids: what the style task, ``stylize.py`` and
``style_grid.py`` share.

Images are ``(3, H, W)`` tensors: uint8 when stored, float in [0, 1] when a network sees them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from normlab.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def to_rgb(img: torch.Tensor) -> torch.Tensor:
    """Grayscale (1 or no channel axis) and RGBA images -> ``(3, H, W)``."""
    if img.dim() == 2:
        img = img.unsqueeze(0)
    if img.shape[0] == 1:
        return img.expand(3, -1, -1).contiguous()
    return img[:3]


def decode_file(path: str | Path) -> torch.Tensor:
    """Any JPEG/PNG/... file -> uint8 ``(3, H, W)``; torchvision's error for a file that is not an image."""
    from torchvision.io import ImageReadMode, decode_image

    return decode_image(str(path), mode=ImageReadMode.RGB, apply_exif_orientation=True)


def read_image(path: str | Path) -> torch.Tensor:
    """``decode_file`` for one file a user named: a missing or broken file is one line that names it."""
    if not Path(path).is_file():
        raise ConfigError(f"no image file at {path}. Fix: give the path of an existing JPEG or PNG file.")
    try:
        return decode_file(path)
    except (RuntimeError, ValueError, OSError):
        raise ConfigError(
            f"{path} is not an image that can be decoded (empty, truncated or another format). "
            f"Fix: give the path of a JPEG or PNG file."
        ) from None


def resize_short(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side has ``size`` pixels, keeping the aspect ratio."""
    from torchvision.transforms.v2.functional import resize

    return resize(img, [size], antialias=True)


def square(img: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to ``size``, then the central ``size`` x ``size`` square: images stack."""
    from torchvision.transforms.v2.functional import center_crop

    return center_crop(resize_short(img, size), [size, size])


def to_float(img: torch.Tensor) -> torch.Tensor:
    return img.float().div(255)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    return img.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def save_png(img: torch.Tensor, path: str | Path) -> Path:
    """Save a ``(3, H, W)`` image (float in [0, 1] or uint8) as PNG."""
    from PIL import Image

    if img.dtype != torch.uint8:
        img = to_uint8(img)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)
    return path


def fit(img: torch.Tensor, size: int) -> torch.Tensor:
    """Scale a float image to fit a ``size`` square, then pad it (white) to exactly that square."""
    h, w = img.shape[-2:]
    s = size / max(h, w)
    img = F.interpolate(
        img[None],
        size=(max(1, round(h * s)), max(1, round(w * s))),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[0]
    h, w = img.shape[-2:]
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(img, (left, size - w - left, top, size - h - top), value=1.0)


def grid(
    rows: list[list[torch.Tensor]], header: list[str] | None = None, tile: int = 256, gap: int = 4
) -> torch.Tensor:
    """Float images ``rows[r][c]`` -> one ``(3, H, W)`` float image, one tile per image, white gaps,
    with an optional text header over the columns."""
    ncols = max(len(r) for r in rows)
    head = 18 if header else 0
    out = torch.ones(3, head + len(rows) * (tile + gap) + gap, ncols * (tile + gap) + gap)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y, x = head + gap + r * (tile + gap), gap + c * (tile + gap)
            out[:, y : y + tile, x : x + tile] = fit(img.float().cpu(), tile)
    if header:
        out = _draw_header(out, header, tile, gap)
    return out


def _draw_header(img: torch.Tensor, labels: list[str], tile: int, gap: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image, ImageDraw

    pil = Image.fromarray(to_uint8(img).permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(pil)
    for c, label in enumerate(labels):
        draw.text((gap + c * (tile + gap) + 4, 3), label, fill=(0, 0, 0))
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1).float().div(255)
