"""The CPU budget's recipe in plain PyTorch, outside normlab: the yardstick for its protocol.

    python scripts/plain_cifar.py --root data/cifar10-jpeg --batch 32 --seed 0
    python scripts/plain_cifar.py --root data/cifar10-jpeg --lr 0.2 --label-smoothing 0.1

ResNet-10 (stem, four stages of one basic block at 16/32/64/128 channels x --width, projection
shortcuts), BatchNorm, the first 1,000 training images of each CIFAR-10 class (--per-class), flips, SGD with
Nesterov momentum, one-cycle lr (--lr x batch / 32), weight decay on weights only; prints the
error on all 10,000 test images after every epoch. Nothing here imports normlab, so a gap
between this and ``train.py experiment=gn_vs_bn`` is normlab's, and a gap between this and a
paper is the recipe's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn


def load(root: Path, split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for label, folder in enumerate(sorted(p for p in (root / split).iterdir() if p.is_dir())):
        for f in sorted(folder.glob("*.jpg"))[:per_class]:
            xs.append(np.asarray(Image.open(f).convert("RGB")))
            ys.append(label)
    return torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255, torch.tensor(ys)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.n2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        changes = stride > 1 or cin != cout
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if changes
            else nn.Identity()
        )

    def forward(self, x):
        return F.relu(self.n2(self.c2(F.relu(self.n1(self.c1(x))))) + self.shortcut(x))


def resnet10(width: float) -> nn.Module:
    widths = [int(w * width) for w in (16, 32, 64, 128)]
    layers = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    for i, w in enumerate(widths):
        layers.append(Block(widths[max(i - 1, 0)], w, 1 if i == 0 else 2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 10))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="a CIFAR-10 tree root/{train,test}/<class>/*.jpg")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.1, help="peak lr at 32 images, scaled linearly with the batch")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--per-class", type=int, default=1000, help="training images per class (1000: the budget's 10,000)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train = load(args.root, "train", args.per_class)
    x_test, y_test = load(args.root, "test", 1000)
    model, b = resnet10(args.width), args.batch
    decay = [q for q in model.parameters() if q.ndim > 1]
    rest = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0}],
        lr=args.lr * b / 32,
        momentum=0.9,
        nesterov=True,
    )
    steps = len(x_train) // b
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr * b / 32, total_steps=args.epochs * steps)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order, wrong = torch.randperm(len(x_train)), 0
        for i in range(steps):
            idx = order[i * b : (i + 1) * b]
            x, y = x_train[idx], y_train[idx]
            x = torch.where(torch.rand(b, 1, 1, 1) < 0.5, x.flip(3), x)
            out = model(x)
            loss = F.cross_entropy(out, y, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            wrong += (out.argmax(1) != y).sum().item()
        model.eval()
        with torch.no_grad():
            right = sum(
                (model(x_test[i : i + 500]).argmax(1) == y_test[i : i + 500]).sum().item()
                for i in range(0, len(x_test), 500)
            )
        print(
            f"epoch {epoch}: train error {100 * wrong / (steps * b):.2f}%, "
            f"test error {100 - 100 * right / len(x_test):.2f}%, {time.time() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
