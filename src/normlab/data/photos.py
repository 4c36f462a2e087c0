"""Content photographs and a style image for the style task, held in memory as uint8 tensors.

- ``skimage_photos`` (offline default): the photographs that scikit-image ships. Training
  content: astronaut, rocket, motorcycle (left view of the stereo pair), Hubble deep field,
  retina, and the grayscale coins, moon and clock (replicated to RGB). Held out: chelsea (a
  cat), coffee and camera (the cameraman), never seen in training. Style:
  ``immunohistochemistry``, a stained tissue section whose brown cell walls on blue-white ground
  read as a brush-and-ink texture, and whose colours differ from every content photograph, so
  a stylization is easy to see.
- ``style_folder``: any folder of images (COCO train2014 in Johnson et al. 2016) as content,
  and a style image from a path.

Training images are stored as ``load_size`` squares (shorter side resized, centre cropped) from
which the datamodule takes random crops; held-out images as ``eval_size`` squares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from normlab.atomic import atomic_path
from normlab.data.decode import decode_files, files_key
from normlab.data.images import IMAGE_SUFFIXES, decode_file, read_image, resize_short, square, to_rgb
from normlab.errors import ConfigError

TRAIN_PHOTOS = ("astronaut", "rocket", "stereo_motorcycle", "hubble_deep_field", "retina", "coins", "moon", "clock")
HELD_OUT_PHOTOS = ("chelsea", "coffee", "camera")
STYLE_IMAGE = "immunohistochemistry"
SPLIT_SEED = 0  # which folder images are held out is part of the dataset, not of the run


@dataclass
class StyleImages:
    train: torch.Tensor  # (N, 3, load_size, load_size) uint8: content images to crop from
    val: torch.Tensor  # (M, 3, eval_size, eval_size) uint8: held-out content images
    style: torch.Tensor  # (3, h, w) uint8, shorter side style_size
    val_names: list[str]


def skimage_image(name: str) -> torch.Tensor:
    """One of ``skimage.data``'s images as uint8 ``(3, H, W)``."""
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if not callable(loader) or name.startswith("_"):
        raise ConfigError(
            f"skimage.data has no image '{name}'. "
            f"Fix: use one of {', '.join(TRAIN_PHOTOS + HELD_OUT_PHOTOS + (STYLE_IMAGE,))}, "
            "or a file path for data.style."
        )
    try:
        img = loader()
    except (ModuleNotFoundError, ValueError, OSError) as err:  # images not in the wheel need pooch + internet
        raise ConfigError(
            f"skimage.data.{name} is not bundled with scikit-image ({err}). Fix: pick one of {', '.join(TRAIN_PHOTOS)}."
        ) from None
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity); take the left view
        img = img[0]
    img = torch.from_numpy(img.astype("uint8") * (255 if img.dtype == bool else 1))
    return to_rgb(img.permute(2, 0, 1) if img.dim() == 3 else img)


def load_style_image(style: str, style_size: int) -> torch.Tensor:
    """A file path, or the name of a ``skimage.data`` image; shorter side resized to ``style_size``."""
    img = read_image(style) if Path(style).suffix.lower() in IMAGE_SUFFIXES else skimage_image(style)
    return resize_short(img, style_size)


def load_skimage_photos(
    train: list[str] = TRAIN_PHOTOS,
    val: list[str] = HELD_OUT_PHOTOS,
    style: str = STYLE_IMAGE,
    load_size: int = 256,
    eval_size: int = 256,
    style_size: int = 256,
) -> StyleImages:
    overlap = sorted(set(train) & set(val))
    if overlap:
        raise ConfigError(
            f"{', '.join(overlap)} is both a training and a held-out image. Fix: remove it from data.val."
        )
    return StyleImages(
        torch.stack([square(skimage_image(n), load_size) for n in train]),
        torch.stack([square(skimage_image(n), eval_size) for n in val]),
        load_style_image(style, style_size),
        list(val),
    )


def image_files(root: str) -> list[Path]:
    if not Path(root).is_dir():
        raise ConfigError(
            f"data.root={root} is not a folder. Fix: point data.root at a folder of images (e.g. COCO train2014)."
        )
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"data.root={root} holds no .jpg/.png images. Fix: point data.root at a folder of images.")
    return files


def decode_squares(files: list[Path], size: int, what: str, skip_bad: bool = False) -> torch.Tensor:
    images, _ = decode_files(files, lambda f: square(decode_file(f), size), what, skip_bad)
    return torch.stack(images)


def cached_squares(
    files: list[Path], size: int, cache_dir: str | None, what: str, skip_bad: bool = False
) -> torch.Tensor:
    """Decode once, then load the stacked tensor from ``cache_dir``: every job of a sweep after the
    first starts in seconds, not after decoding tens of thousands of JPEGs."""
    if not cache_dir:
        return decode_squares(files, size, what, skip_bad)
    key = files_key(files, size, skip_bad)
    cache = Path(cache_dir).expanduser() / f"style_folder-{Path(files[0]).parent.name}-{key}.pt"
    if cache.exists():
        return torch.load(cache)
    x = decode_squares(files, size, what, skip_bad)
    with atomic_path(cache) as tmp:  # parallel jobs never read half a file
        torch.save(x, tmp)
    return x


def load_style_folder(
    root: str,
    style: str,
    val_root: str | None = None,
    val_size: int = 8,
    subset: int | None = None,
    load_size: int = 256,
    eval_size: int = 256,
    style_size: int = 256,
    cache_dir: str | None = None,
    skip_bad_images: bool = False,
) -> StyleImages:
    """Content from every image under ``root``; held out: the first ``val_size`` images of
    ``val_root``, or ``val_size`` images of ``root`` chosen once with a fixed seed. ``subset`` caps the training images
    (COCO's 83k images at 256 px take 16 GB as uint8)."""
    files = image_files(root)
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    shuffled = [files[i] for i in perm]  # so that subset and the held-out images are random picks
    if val_root:
        train_files, val_files = shuffled, image_files(val_root)[:val_size]
    else:
        if len(files) <= val_size:
            raise ConfigError(
                f"data.root={root} has {len(files)} images, not more than data.val_size={val_size}. "
                f"Fix: lower data.val_size or set data.val_root."
            )
        train_files, val_files = shuffled[val_size:], sorted(shuffled[:val_size])
    if subset:
        train_files = train_files[:subset]
    held_out, kept = decode_files(
        val_files, lambda f: square(decode_file(f), eval_size), "held-out image", skip_bad_images
    )
    return StyleImages(
        cached_squares(train_files, load_size, cache_dir, "content image", skip_bad_images),
        torch.stack(held_out),
        load_style_image(style, style_size),
        [val_files[i].stem for i in kept],
    )


STYLE_DATASETS = {"skimage_photos": load_skimage_photos, "style_folder": load_style_folder}
