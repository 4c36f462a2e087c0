"""``image_folder``: any ``root/<split>/<class>/<image>`` tree, e.g. CIFAR-10 as JPEG files.

Splits are ``train`` and ``test``, and ``val`` if present (otherwise it is held out from
train). Images are decoded once, with a progress bar, into uint8 tensors and cached as one
``.pt`` file per tree, so every job of a sweep after the first loads in a second.
"""

from __future__ import annotations

from pathlib import Path

import torch

from normlab.atomic import atomic_path
from normlab.data.decode import decode_files, files_key
from normlab.data.splits import ImageSplits, Split, hold_out
from normlab.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _decode_split(folder: Path, classes: list[str], size: int | None, skip_bad: bool) -> Split:
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import resize

    def decode(f: Path) -> torch.Tensor:
        img = decode_image(str(f), mode=ImageReadMode.RGB)
        return resize(img, [size, size], antialias=True) if size else img

    files, labels = _files(folder, classes)
    images, kept = decode_files(files, decode, f"{folder.name} image", skip_bad)
    try:
        return Split(torch.stack(images), torch.tensor([labels[i] for i in kept]))
    except RuntimeError:
        raise ConfigError(
            f"images in {folder} differ in size. Fix: set data.image_size=<pixels> to resize them."
        ) from None


def _files(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    pairs = [
        (f, c)
        for c, name in enumerate(classes)
        for f in sorted((folder / name).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    return [f for f, _ in pairs], [c for _, c in pairs]


def _cache_file(
    root: Path, splits: list[str], classes: list[str], size: int | None, skip_bad: bool, cache_dir: str
) -> Path:
    files = [f for s in splits for f in _files(root / s, classes)[0]]
    return Path(cache_dir).expanduser() / f"image_folder-{root.name}-{files_key(files, size, skip_bad)}.pt"


def load_image_folder(
    root: str,
    val_size: int = 5000,
    image_size: int | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
    skip_bad_images: bool = False,
) -> ImageSplits:
    tree = Path(root)
    if not (tree / "train").is_dir() or not (tree / "test").is_dir():
        raise ConfigError(
            f"data.root={root} has no train/ and test/ folders. "
            f"Fix: point data.root at a folder laid out as <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg."
        )
    classes = sorted(p.name for p in (tree / "train").iterdir() if p.is_dir())
    names = [s for s in ("train", "val", "test") if (tree / s).is_dir()]
    cache = _cache_file(tree, names, classes, image_size, skip_bad_images, cache_dir) if cache_dir else None
    if cache and cache.exists():
        splits = torch.load(cache)
    else:  # the cache is written only once every split is decoded, and whole (atomic_path)
        splits = {s: _decode_split(tree / s, classes, image_size, skip_bad_images) for s in names}
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
