"""Ghost Batch Normalization (Hoffer, Hubara & Soudry, 2017, "Train longer, generalize better:
closing the generalization gap in large batch training of neural networks", Algorithm 1).

In training, the batch is split along N into virtual ("ghost") batches of ``virtual_batch``
samples, and each is normalized by BatchNorm with its own statistics:

    x = [x_1; ...; x_k],  y_j = gamma * (x_j - mu_j) / sqrt(var_j + eps) + beta

- ``nchw``: each ghost batch's statistics over (n_j, H, W) per channel;
- ``nlc``:  over (n_j, L) per channel.

A batch that ``virtual_batch`` does not divide ends with a smaller ghost batch, except that a
last ghost batch of one sample joins the one before (one sample has no statistics across
samples); a batch smaller than ``virtual_batch`` is one ghost batch: plain BatchNorm.
The output, and so the gradient, is exactly that of BatchNorm run separately on each
sub-batch (tested). Eval mode is BatchNorm's inference with the running statistics.

Running statistics, by choice: every ghost batch contributes, in one update per step,

    running = (1 - momentum) * running + momentum * sum_j (n_j / N) * stat_j

with the size-weighted mean of the ghost batches' statistics (unbiased variances). So
``momentum`` means what it means for ``batch`` (per step; k ghost batches updating one after
the other with it would forget k times faster), and PreciseBN's plain average over batches is
the plain average over ghost batches. Small inputs realise it with the native kernel on each
ghost batch j, in order, with momentum w_j / (1 - sum_{i>j} w_i), w_j = momentum * n_j / N,
and concatenate the outputs; large ones (fast path, ``fast/ghost_batch.py``) take every ghost
batch's statistics from the per-(sample, channel) moments in one pass over x and scale and
shift each sample by its ghost batch's factors. A batch of at most ``virtual_batch`` samples, and eval mode, are plain
BatchNorm: the native kernel.

Precision: bf16 and fp16 inputs are normalized as an fp32 copy on both paths: each ghost batch's
statistics, scale and shift in fp32, the output rounded once to x's dtype; the gradients of x
and of a bf16 layer's gamma and beta summed in fp32 and rounded once.

Deviation: PreciseBN pools each batch's ghost batches into one estimate, with the Bessel correction of
one ghost batch's count (``callbacks/norm_stats.py``).
"""

from __future__ import annotations

import torch

from normlab.chunks import split_batch
from normlab.errors import ConfigError
from normlab.norms.layer import AffineNorm
from normlab.norms.precision import upcast
from normlab.norms.running import add_running_stats, batch_norm


class GhostBatchNorm(AffineNorm):
    axes = {"nchw": "(N/k, H, W) per ghost batch and channel", "nlc": "(N/k, L) per ghost batch and channel"}
    batch_dependent = True

    def __init__(
        self,
        num_channels: int,
        layout: str = "nchw",
        virtual_batch: int = 16,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ):
        super().__init__(num_channels, layout, eps, affine)
        if virtual_batch < 1:
            raise ConfigError(
                f"GhostBatchNorm with virtual_batch={virtual_batch}. Fix: set norm.virtual_batch to 1 or more."
            )
        self.virtual_batch, self.momentum = virtual_batch, momentum
        add_running_stats(self, num_channels)

    def formula(self, x: torch.Tensor) -> torch.Tensor:
        # bf16/fp16 x and parameters as one fp32 copy each: every ghost batch's statistics and output in
        # fp32, rounded to x's dtype once, and gamma's and beta's gradients from the ghost batches summed
        # in fp32 and rounded once, not each rounded to a bf16 layer's dtype. fp32: x and the parameters.
        xs, gamma, beta = upcast(x), upcast(self.weight), upcast(self.bias)
        if not self.training or x.shape[0] <= self.virtual_batch:
            return batch_norm(self, xs, gamma, beta, self.momentum).to(x.dtype)
        ghosts = split_batch(xs, self.virtual_batch)  # contiguous views along N
        weights = [self.momentum * len(g) / x.shape[0] for g in ghosts]  # w_j
        later = [sum(weights[j + 1 :]) for j in range(len(ghosts))]  # sum_{i>j} w_i
        ys = [batch_norm(self, g, gamma, beta, min(w / (1 - rest), 1.0)) for g, w, rest in zip(ghosts, weights, later)]
        return torch.cat(ys).to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", virtual_batch={self.virtual_batch}"
