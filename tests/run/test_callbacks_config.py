"""conf/callbacks/: the callbacks a run gets by default, per task and norm, and each one switched from
the command line (dropped, changed, added, or the user's own); a broken entry is one actionable line."""

from __future__ import annotations

import pytest
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, Timer, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from normlab.callbacks import (
    BatchStatDiagnostics,
    DivergenceGuard,
    EpochAverages,
    LastCheckpoint,
    MixingWeights,
    PreciseBN,
    ResumeState,
    Throughput,
)
from normlab.errors import ConfigError
from normlab.run.trainer import build_trainer

EVERY_RUN = {
    Throughput,
    ResumeState,
    DivergenceGuard,
    LearningRateMonitor,
    TQDMProgressBar,
    ModelCheckpoint,
    LastCheckpoint,
}

KNOWN = EVERY_RUN | {BatchStatDiagnostics, MixingWeights, EpochAverages, PreciseBN}  # Lightning adds its own too


@pytest.fixture
def callbacks(compose, tmp_path):
    def _callbacks(*overrides, loggers=True):
        trainer = build_trainer(compose(list(overrides)), tmp_path, [CSVLogger(tmp_path)] if loggers else [])
        return trainer.callbacks

    return _callbacks


def kinds(callbacks) -> set[type]:
    return {type(c) for c in callbacks}


@pytest.mark.parametrize(
    "overrides, extra",
    [
        ((), {BatchStatDiagnostics}),  # BatchNorm in task=classify: the batch-statistics diagnostics
        (("norm=group",), set()),  # a batch-free norm has no batch statistics to diagnose
        (("norm=switchable",), {BatchStatDiagnostics, MixingWeights}),  # learned mixing weights, logged
        (("norm=bln",), {BatchStatDiagnostics, EpochAverages}),  # the authors' epoch averages
        (("task=lm", "norm=batch"), set()),  # the diagnostics are classify's
    ],
)
def test_defaults_per_task_and_norm(callbacks, overrides, extra):
    assert kinds(callbacks(*overrides)) & KNOWN == EVERY_RUN | extra


def test_without_a_logger_or_a_bar_or_checkpoints_those_callbacks_are_not_built(callbacks):
    built = kinds(callbacks("trainer.enable_progress_bar=false", "trainer.enable_checkpointing=false", loggers=False))
    assert not built & {LearningRateMonitor, TQDMProgressBar, ModelCheckpoint, LastCheckpoint}
    assert {DivergenceGuard, BatchStatDiagnostics} <= built


def test_each_callback_is_switched_from_the_command_line(callbacks):
    assert LearningRateMonitor not in kinds(callbacks("~callbacks.lr_monitor"))
    assert PreciseBN not in kinds(callbacks())
    (precise,) = [
        c for c in callbacks("callbacks=precise_bn", "callbacks.precise_bn.num_batches=7") if isinstance(c, PreciseBN)
    ]
    assert precise.num_batches == 7
    (diag,) = [c for c in callbacks("callbacks.batch_stats.precise_batches=9") if isinstance(c, BatchStatDiagnostics)]
    assert diag.precise_batches == 9
    (guard,) = [c for c in callbacks("trainer.log_every_n_steps=7") if isinstance(c, DivergenceGuard)]
    assert guard.check_every == 7  # read on the host as often as the loss is logged


def test_a_users_own_callback_from_its_target(callbacks):
    timer = "lightning.pytorch.callbacks.Timer"
    built = callbacks(f"+callbacks.timer._target_={timer}", "+callbacks.timer.duration=00:01:00:00")
    assert Timer in kinds(built)


def test_a_broken_entry_is_one_line_that_names_it(callbacks):
    with pytest.raises(ConfigError, match=r"callbacks\.divergence could not be built: .*Fix: .*~callbacks\.divergence"):
        callbacks("+callbacks.divergence.every=3")
    with pytest.raises(ConfigError, match=r"callbacks\.mine could not be built"):
        callbacks("+callbacks.mine._target_=no_such_package.Callback")
