"""``image_folder``: any ``root/<split>/<class>/<image>`` tree, e.g. CIFAR-10 as JPEG files.

Splits are ``train`` and ``test``, and ``val`` if present (otherwise it is held out from
train). Images are decoded once, with a progress bar, into uint8 tensors and cached as one
``.pt`` file per tree, so every job of a sweep after the first loads in a second.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from tqdm import tqdm

from normlab.atomic import atomic_path
from normlab.data.splits import ImageSplits, Split, hold_out
from normlab.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _decode_split(folder: Path, classes: list[str], size: int | None) -> Split:
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import resize

    files = [(f, c) for c, name in enumerate(classes) for f in sorted((folder / name).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    images, labels = [], []
    for f, c in tqdm(files, desc=f"decoding {folder.name}", unit="img", mininterval=2):
        img = decode_image(str(f), mode=ImageReadMode.RGB)
        images.append(resize(img, [size, size], antialias=True) if size else img)
        labels.append(c)
    try:
        return Split(torch.stack(images), torch.tensor(labels))
    except RuntimeError:
        raise ConfigError(
            f"images in {folder} differ in size. Fix: set data.image_size=<pixels> to resize them."
        ) from None


def _cache_file(root: Path, size: int | None, cache_dir: str) -> Path:
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    key = hashlib.sha1(f"{root.resolve()}|{size}|{len(files)}|{files[:5]}|{files[-5:]}".encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser() / f"image_folder-{root.name}-{key}.pt"


def load_image_folder(
    root: str, val_size: int = 5000, image_size: int | None = None, seed: int = 0, cache_dir: str | None = None
) -> ImageSplits:
    tree = Path(root)
    if not (tree / "train").is_dir() or not (tree / "test").is_dir():
        raise ConfigError(
            f"data.root={root} has no train/ and test/ folders. "
            f"Fix: point data.root at a folder laid out as <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg."
        )
    classes = sorted(p.name for p in (tree / "train").iterdir() if p.is_dir())
    cache = _cache_file(tree, image_size, cache_dir) if cache_dir else None
    if cache and cache.exists():
        splits = torch.load(cache)
    else:
        names = [s for s in ("train", "val", "test") if (tree / s).is_dir()]
        splits = {s: _decode_split(tree / s, classes, image_size) for s in names}
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp:  # parallel jobs never read half a file
                torch.save({s: (v.x, v.y) for s, v in splits.items()}, tmp)
    splits = {s: v if isinstance(v, Split) else Split(*v) for s, v in splits.items()}
    if "val" in splits:
        train, val = splits["train"], splits["val"]
    else:
        train, val = hold_out(splits["train"], val_size, seed)
    return ImageSplits(train, val, splits["test"], classes)
