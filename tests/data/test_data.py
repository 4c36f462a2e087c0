from __future__ import annotations

import pytest
import torch

from normlab.data import DATASETS, build_image_datamodule
from normlab.data.augment import random_crop, random_flip
from normlab.data.batches import TensorBatches
from normlab.data.folder import load_image_folder
from normlab.data.mnist import load_mnist5k
from normlab.data.splits import Split, subsample
from normlab.errors import ConfigError


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    torch.manual_seed(0)
    out = random_crop(x, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_random_flip_flips_some_images_and_keeps_the_others():
    x = torch.randn(64, 3, 4, 4)
    torch.manual_seed(0)
    out = random_flip(x)
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54


def test_batches_cover_an_epoch_and_ranks_see_disjoint_data():
    split = Split(torch.zeros(103, 1, 2, 2, dtype=torch.uint8), torch.arange(103))
    seen = []
    for rank in range(2):
        batches = TensorBatches(split, 10, shuffle=True, drop_last=True, seed=3, rank=rank, world=2)
        assert len(batches) == 5 == len(list(batches))
        seen.append(torch.cat([y for _, y in TensorBatches(split, 10, True, False, 3, rank, 2)]))
    assert len(seen[0]) == len(seen[1]) == 51
    assert not set(seen[0].tolist()) & set(seen[1].tolist())


def test_mnist5k_is_real_digits_split_without_overlap():
    data = load_mnist5k()
    assert (len(data.train), len(data.val), len(data.test)) == (4000, 500, 500)
    assert data.train.x.shape[1:] == (1, 28, 28) and data.train.x.dtype == torch.uint8
    assert torch.bincount(data.test.y).tolist() == [50] * 10
    rows = {bytes(x.numpy()) for x in data.train.x}
    assert not rows & {bytes(x.numpy()) for x in data.test.x}


def test_subset_is_class_balanced():
    data = load_mnist5k()
    assert torch.bincount(subsample(data.train, 1000, 0).y).tolist() == [100] * 10


@pytest.fixture
def jpeg_tree(tmp_path):
    from torchvision.io import write_jpeg

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 12), ("test", 4)):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                img = torch.randint(0, 255, (3, 8, 8), generator=g, dtype=torch.uint8)
                write_jpeg(img, str(tmp_path / split / c / f"{i}.jpg"))
    return tmp_path


def test_image_folder_reads_a_tree_and_caches_it(jpeg_tree, tmp_path):
    cache = tmp_path / "cache"
    data = load_image_folder(str(jpeg_tree), val_size=4, cache_dir=str(cache))
    assert data.classes == ["cat", "dog"] and data.train.x.shape == (20, 3, 8, 8)
    assert (len(data.val), len(data.test)) == (4, 8)
    assert len(list(cache.iterdir())) == 1
    again = load_image_folder(str(jpeg_tree), val_size=4, cache_dir=str(cache))
    assert torch.equal(again.test.x, data.test.x)


def test_image_folder_without_splits_says_how_to_lay_it_out(tmp_path):
    with pytest.raises(ConfigError, match="has no train/ and test/ folders"):
        load_image_folder(str(tmp_path))


def test_cifar_offline_says_how_to_get_it(tmp_path):
    with pytest.raises(ConfigError, match=r"cifar10 is not in .*Fix: run once online with data.download=true"):
        DATASETS["cifar10"](str(tmp_path), download=False)


def test_datamodule_rejects_unknown_options():
    with pytest.raises(ConfigError, match="dataset 'mnist5k' has no option rooot"):
        build_image_datamodule({"name": "mnist5k", "batch": 2, "rooot": "x"}, seed=0)
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        build_image_datamodule({"name": "mnist", "batch": 2}, seed=0)


def test_batches_are_normalized_after_transfer():
    dm = build_image_datamodule({"name": "mnist5k", "batch": 64}, seed=0)
    dm.setup()
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.dtype == torch.float32 and x.shape == (64, 1, 28, 28)
    assert abs(x.mean().item()) < 0.3 and 0.7 < x.std().item() < 1.3


def test_evaluation_batches_mix_classes_even_when_files_are_sorted_by_class(jpeg_tree, tmp_path):
    from normlab.data.module import ImageDataModule

    dm = ImageDataModule(lambda: load_image_folder(str(jpeg_tree), val_size=4), batch=4, eval_batch=4)
    dm.setup()
    assert any(len(y.unique()) > 1 for _, y in dm.test_dataloader())
