"""bln against a transcription of its authors' Keras layer.

Source: github.com/A2Amir/Batch-Layer-Normalization, helpers/bln_layer.py (``bln_layer``:
``bn_training``, ``update_mm_mv``, ``bln_inference`` with its defaults batch_moving_mean =
batch_moving_var = True, feature moving statistics off) and helpers/bln_callback.py (the moving
sums restart at every epoch and are divided at its last batch). Their tensors are channels-last
(N, H, W, C) or (N, T, C); ``tf.nn.moments`` gives the biased variance.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from normlab.callbacks.norm_stats import EpochAverages
from normlab.errors import ConfigError
from normlab.norms import build_norm


class AuthorsBLN:
    """helpers/bln_layer.py, line by line, with torch ops for tf ones."""

    def __init__(self, batchsize, channels, offset=0.001):
        self.batch_size, self.offset, self.dk = float(batchsize), offset, float(channels)
        self.gamma1, self.beta1 = torch.ones(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
        self.moving_Bmean = self.moving_Bvar = 0.0
        self.batch_count = 0

    def moments(self, x, axis):
        return x.mean(axis, keepdim=True), x.var(axis, unbiased=False, keepdim=True)

    def mix(self, x, feature_mean, feature_std, batch_mean, batch_std):
        x_f = (x - feature_mean) / feature_std
        x_b = (x - batch_mean) / batch_std
        numerator = (x_f * ((1 / self.batch_size) - 0.0001)) + (x_b * (1 - ((1 / self.batch_size) + 0.0001)))
        x_beta = numerator / self.dk**0.5
        return (self.gamma1 * x_beta) + self.beta1

    def bn_training(self, x):
        batch_mean, batch_var = self.moments(x, 0)
        batch_std = torch.sqrt(batch_var + self.offset)
        self.moving_Bmean = self.moving_Bmean + batch_mean
        self.moving_Bvar = self.moving_Bvar + batch_var
        feature_mean, feature_var = self.moments(x, -1)
        feature_std = torch.sqrt(feature_var + self.offset)
        return self.mix(x, feature_mean, feature_std, batch_mean, batch_std)

    def update_mm_mv(self):  # at the epoch's last batch, batch_count = the epoch's steps
        self.moving_Bmean = self.moving_Bmean / self.batch_count
        self.moving_Bvar = self.moving_Bvar * (self.batch_size / ((self.batch_size - 1) * self.batch_count))

    def bln_inference(self, x):
        batch_mean, batch_std = self.moving_Bmean, torch.sqrt(self.moving_Bvar + self.offset)
        feature_mean, feature_var = self.moments(x, -1)
        return self.mix(x, feature_mean, torch.sqrt(feature_var + self.offset), batch_mean, batch_std)

    def reset_states(self):  # the callback's on_epoch_begin
        self.moving_Bmean = self.moving_Bvar = 0.0


def channels_last(x, layout):
    return x.permute(0, 2, 3, 1) if layout == "nchw" else x


def batches(layout, n=4, size=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (size, 8, 5, 3) if layout == "nchw" else (size, 7, 8)
    return [torch.randn(shape, generator=g, dtype=torch.float64) * (i + 1) + i for i in range(n)]


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_training_running_averages_and_inference_match_the_authors_layer_over_two_epochs(layout):
    layer = build_norm("bln", 8, layout).double()
    authors = AuthorsBLN(batchsize=6, channels=8)
    callback, module = EpochAverages(), SimpleNamespace(model=layer)
    for epoch in range(2):
        callback.on_train_epoch_start(None, module)
        authors.reset_states()
        layer.train()
        steps = batches(layout, seed=epoch)
        authors.batch_count = len(steps)
        for x in steps:
            torch.testing.assert_close(channels_last(layer(x), layout), authors.bn_training(channels_last(x, layout)))
        authors.update_mm_mv()
        torch.testing.assert_close(channels_last(layer.running_mean[None], layout), authors.moving_Bmean)
        torch.testing.assert_close(channels_last(layer.running_var[None], layout), authors.moving_Bvar)
        layer.eval()
        test = batches(layout, n=1, size=3, seed=9)[0]  # another batch size at inference: 1/m stays 1/6
        torch.testing.assert_close(
            channels_last(layer(test), layout), authors.bln_inference(channels_last(test, layout))
        )


def test_a_checkpoint_loads_into_a_new_layer_and_another_image_size_is_refused_in_one_line():
    layer = build_norm("bln", 8)
    layer(torch.randn(4, 8, 5, 3))
    fresh = build_norm("bln", 8)
    fresh.load_state_dict(layer.state_dict())
    layer.eval(), fresh.eval()
    x = torch.randn(2, 8, 5, 3)
    torch.testing.assert_close(fresh(x), layer(x))
    with pytest.raises(ConfigError, match="per position"):
        fresh(torch.randn(2, 8, 6, 6))


def test_a_batch_of_one_is_the_feature_part_weighted_as_the_authors_weight_it():
    layer = build_norm("bln", 8, affine=False).double()
    x = torch.randn(1, 8, 4, 4, dtype=torch.float64)
    var, mean = torch.var_mean(x, 1, correction=0, keepdim=True)
    x_f = (x - mean) / torch.sqrt(var + 1e-3)
    torch.testing.assert_close(layer(x), (1 - 1e-4) * x_f / 8**0.5)  # the batch part is 0 at m = 1
