"""Lightning callbacks that act on a model's norm layers.

- ``PreciseBN`` (Wu & Johnson, 2021, "Rethinking 'Batch' in BatchNorm", Sec. 3): before every
  validation and test, the running statistics of every BatchNorm-like layer (``batch_dependent``
  and ``running_mean``: batch, bln, batch_renorm, ghost_batch, evonorm_b0, switchable,
  batch_instance) are recomputed with the current weights as a plain average over training
  batches (``diagnostics.precise_bn``), replacing the exponential moving average, which mixes
  statistics of weights that kept changing. val/*, test/* and the checkpoints then use them.
  Switched on by ``precise_bn.enabled=true``. Unlike the ``test/*_precise_bn`` diagnostics,
  which evaluate a copy, this changes the model's own running statistics. Under DDP each
  device averages its own batches (as BatchNorm's running statistics are per device).
- ``MixingWeights``: at the end of every training epoch, logs what the layers that learn a
  mixture learned: switchable's softmax importance weights, batch_instance's mean rho (any
  layer with a ``mixing_weights()`` method), as ``mixing/<layer>/<weight>``.
"""

from __future__ import annotations

import lightning as L

from normlab.diagnostics import batch_stat_layers, precise_bn, train_inputs


def norm_model(pl_module: L.LightningModule):
    return getattr(pl_module, "model", pl_module)


class PreciseBN(L.Callback):
    def __init__(self, num_batches: int = 100):
        self.num_batches = num_batches

    def recompute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        model = norm_model(pl_module)
        if not batch_stat_layers(model):
            return 0
        return precise_bn(model, train_inputs(trainer, pl_module), self.num_batches)

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:  # the untrained network's statistics are not worth a pass
            self.recompute(trainer, pl_module)

    def on_test_start(self, trainer, pl_module):
        self.recompute(trainer, pl_module)


class MixingWeights(L.Callback):
    """Straight to the loggers, not ``pl_module.log``: one curve per layer is for plots, not for
    the run's summary."""

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = {
            f"mixing/{name}/{key}": value
            for name, m in norm_model(pl_module).named_modules() if callable(getattr(m, "mixing_weights", None))
            for key, value in m.mixing_weights().items()
        }
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
