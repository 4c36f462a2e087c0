"""Training metrics logged on intervals (normlab.tasks.train_metrics), with Lightning's names."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from normlab.run import train
from normlab.tasks.train_metrics import logs_this_step


@pytest.mark.parametrize("every, steps_logged", [(4, [3, 7, 11]), (1, list(range(12))), (0, [])])
def test_a_step_is_logged_when_lightning_writes_the_loggers(every, steps_logged):
    logged = [
        s
        for s in range(12)
        if logs_this_step(SimpleNamespace(log_every_n_steps=every, global_step=s, fast_dev_run=False))
    ]
    assert logged == steps_logged


def test_epoch_mean_is_the_mean_of_the_step_losses_and_the_summary_keeps_lightnings_names(compose):
    # 200 digits, 16 per step: 12 steps of equal size, every one of them logged.
    cfg = compose(
        [
            "norm=group",
            "model=resnet8",
            "data.subset=200",
            "data.batch=16",
            "logger=csv",
            "trainer.max_epochs=1",
            "trainer.log_every_n_steps=1",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "trainer.enable_checkpointing=false",
            "trainer.enable_progress_bar=false",
            "~callbacks.batch_stats",
        ]
    )
    summary = train(cfg)
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    epoch = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert len(steps) == 12 and len(epoch) == 1
    assert math.isclose(epoch[0], sum(steps) / len(steps), rel_tol=1e-5)
    metrics = summary["metrics"]
    assert math.isclose(metrics["train/loss"], epoch[0], rel_tol=1e-6)
    assert 0 <= metrics["train/err"] <= 100 and {"train/loss_step", "train/loss_epoch"} <= set(metrics)


def test_throughput_leaves_validation_out_of_the_epoch_time(monkeypatch):
    from normlab.callbacks import throughput as callbacks

    clock = iter([0.0, 4.0, 10.0, 12.0])  # epoch start, validation start, validation end, epoch end
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    logged = {}
    module = SimpleNamespace(log=lambda name, value, **kw: logged.__setitem__(name, value), counts_tokens=False)
    trainer = SimpleNamespace(world_size=1)
    meter = callbacks.Throughput()
    meter.on_train_epoch_start(trainer, module)
    meter.samples = 60  # as 60 samples of training steps would have counted
    meter.on_validation_start(trainer, module)
    meter.on_validation_end(trainer, module)
    meter.on_train_epoch_end(trainer, module)
    assert logged == {"train/samples_per_s": 60 / 6.0}  # 12 s of epoch, 6 of them validating
