"""How a batch is cut into smaller ones: for the last batch of an epoch, ghost batches and
evaluation chunks alike, a last piece of one sample joins the one before.

A batch of one has no statistics across samples: a norm that uses the batch would normalize
that sample by itself. Plain torch, no Lightning: the norms import it.
"""

from __future__ import annotations

import torch


def batch_sizes(n: int, batch_size: int, drop_last: bool) -> list[int]:
    """How ``n`` items are cut into batches; without ``drop_last`` a last batch of one joins the one before.

    A batch of one has no statistics across samples: a norm that uses the batch would
    normalize that image by itself.
    """
    full, rest = divmod(n, batch_size)
    sizes = [batch_size] * full
    if drop_last or rest == 0:
        return sizes
    if rest == 1 and sizes:
        sizes[-1] += 1
        return sizes
    return sizes + [rest]


def split_batch(x: torch.Tensor, chunk: int | None) -> tuple[torch.Tensor, ...]:
    """``x`` in chunks of ``chunk`` rows (a last chunk of one row joins the one before)."""
    if not chunk or chunk >= len(x):
        return (x,)
    return x.split(batch_sizes(len(x), chunk, drop_last=False))
