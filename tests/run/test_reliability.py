"""Runs that fail say so and let the sweep go on; diverged runs stop and keep good weights; killed
runs resume to exactly the result they would have had; a seed repeats a run bit for bit."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from cli_run import run_cli

from normlab.callbacks.checkpoints import AtomicCheckpointIO
from normlab.callbacks.divergence import DivergenceGuard
from normlab.chunks import batch_sizes, split_batch
from normlab.data.batches import TensorBatches
from normlab.data.splits import Split
from normlab.errors import ConfigError, Diverged
from normlab.report import report
from normlab.run import lifecycle as run
from normlab.run.resume import resume_argv, resume_point

ROOT = Path(__file__).resolve().parents[2]
# 2 epochs, last.ckpt every 4 steps, one validation and test batch.
SHORT = [
    "logger=csv",
    "threads=1",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=2",
    "checkpoint.every_n_steps=4",
]
# ResNet-8 on 200 MNIST digits, 12 steps an epoch (8 images left out).
TINY = [*SHORT, "model=resnet8", "data.subset=200", "data.batch=16", "data.eval_batch=100", "~callbacks.batch_stats"]
# The other tasks' training loaders draw random windows and crops: 10 steps an epoch.
TINY_TASKS = {
    "lm": [
        *SHORT,
        "task=lm",
        "model.n_layer=1",
        "model.n_head=2",
        "model.n_embd=16",
        "model.block_size=16",
        "data.train_batches=10",
        "data.eval_batch=8",
        "data.eval_windows=8",
        "task.sample.num=1",
        "task.sample.chars=4",
    ],
    "style": [
        *SHORT,
        "task=style",
        "model.width=0.25",
        "task.loss.width=0.125",
        "data.crop=16",
        "data.load_size=24",
        "data.eval_size=21",
        "data.style_size=24",
        "data.batch=2",
        "data.steps_per_epoch=10",
    ],
}


def compose_into(run_dir: Path, overrides=(), base=TINY):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*base, *overrides])
    with open_dict(cfg):
        cfg.paths.root_dir, cfg.paths.output_dir = str(ROOT), str(run_dir)
        cfg.paths.cache_dir = str(run_dir.parent / "cache")
    return cfg


@pytest.fixture(scope="module", autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()  # threads=1 in the runs below must not slow the rest of the suite
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    return run.train(compose_into(run_dir)), run_dir


def metrics(summary: dict) -> dict:
    return {k: v for k, v in summary["metrics"].items() if "per_s" not in k}  # throughput is wall-clock


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def step_losses(run_dir: Path) -> dict:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return {int(r["step"]): float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")}


# --- determinism and resuming ----------------------------------------------------------------


def test_same_seed_repeats_bit_for_bit_and_another_seed_differs(uninterrupted, tmp_path):
    first, first_dir = uninterrupted
    again = run.train(compose_into(tmp_path / "again"))
    other = run.train(compose_into(tmp_path / "other", ["seed=1"]))
    assert metrics(again) == metrics(first) and same_weights(weights(tmp_path / "again"), weights(first_dir))
    assert metrics(other)["train/loss"] != metrics(first)["train/loss"]
    assert first["seed"] == 0 and first["config"]["seed"] == 0 and other["seed"] == 1


class Killed(Exception):
    pass


class KillAtStep(L.Callback):
    """Dies as a killed job would: at the start of a step, after the last checkpoint."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Killed(f"killed at step {self.step}")


def kill_then_resume(run_dir: Path, monkeypatch, base=TINY) -> dict:
    build = run.build_trainer

    def build_and_kill(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.callbacks.insert(0, KillAtStep(6))  # the last checkpoint is from step 4, mid-epoch 0
        return trainer

    monkeypatch.setattr(run, "build_trainer", build_and_kill)
    with pytest.raises(Killed):
        run.train(compose_into(run_dir, base=base))
    monkeypatch.setattr(run, "build_trainer", build)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    return run.train(compose_into(run_dir, [f"resume={run_dir}"], base=base))


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(uninterrupted, tmp_path, monkeypatch):
    first, first_dir = uninterrupted
    run_dir = tmp_path / "run"
    resumed = kill_then_resume(run_dir, monkeypatch)
    assert resumed["status"] == "completed" and resumed["resumes"] == 1 and resumed["steps"] == 24
    assert metrics(resumed) == metrics(first)  # the same data order, augmentation and updates
    assert same_weights(weights(run_dir), weights(first_dir))
    assert step_losses(run_dir) == step_losses(first_dir)  # the CSV history of both attempts, steps once


@pytest.mark.parametrize("task", sorted(TINY_TASKS))
def test_lm_and_style_runs_killed_mid_epoch_resume_to_the_uninterrupted_result(task, tmp_path, monkeypatch):
    first = run.train(compose_into(tmp_path / "first", base=TINY_TASKS[task]))
    resumed = kill_then_resume(tmp_path / "run", monkeypatch, base=TINY_TASKS[task])
    assert resumed["status"] == "completed" and resumed["steps"] == first["steps"] == 20
    assert metrics(resumed) == metrics(first)  # the same windows / crops, the same updates
    assert same_weights(weights(tmp_path / "run"), weights(tmp_path / "first"))


class CtrlC(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 6:
            raise KeyboardInterrupt


def test_ctrl_c_is_recorded_as_interrupted_and_the_run_resumes(uninterrupted, tmp_path, monkeypatch):
    first, _ = uninterrupted
    run_dir, build = tmp_path / "run", run.build_trainer

    def build_and_interrupt(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.callbacks.insert(0, CtrlC())
        return trainer

    monkeypatch.setattr(run, "build_trainer", build_and_interrupt)
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores further Ctrl-C while it shuts down
    try:
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            run.train(compose_into(run_dir))
    finally:
        signal.signal(signal.SIGINT, sigint)
    monkeypatch.setattr(run, "build_trainer", build)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    resumed = run.train(compose_into(run_dir, [f"resume={run_dir}"]))
    assert resumed["status"] == "completed" and metrics(resumed) == metrics(first)


def test_resume_refuses_what_cannot_be_resumed(uninterrupted, tmp_path):
    _, done_dir = uninterrupted
    config = json.loads((done_dir / "summary.json").read_text())["config"]
    with pytest.raises(ConfigError, match="already completed its 2 epochs.*trainer.max_epochs=<more than 2>"):
        resume_point(done_dir, config)
    changed = {**config, "norm": {**config["norm"], "momentum": 0.5}}
    with pytest.raises(ConfigError, match=r"different config: norm.momentum=0.5 \(the run has 0.1\)"):
        resume_point(done_dir, changed)
    with pytest.raises(ConfigError, match="its summary.json is missing"):
        resume_point(tmp_path, config)
    (tmp_path / "summary.json").write_text(json.dumps({"status": "running", "config": config}))
    with pytest.raises(ConfigError, match="has no checkpoints/last.ckpt: it stopped before its first checkpoint"):
        resume_point(tmp_path, config)


def test_resume_repeats_the_runs_overrides_and_refuses_new_ones(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["norm=group", "data.batch=2"]))
    argv = resume_argv(["train.py", f"resume={tmp_path}", "trainer.max_epochs=9"])
    assert argv == [
        "train.py",
        "norm=group",
        "data.batch=2",
        "trainer.max_epochs=9",
        f"resume={tmp_path}",
        f"hydra.run.dir={tmp_path}",
    ]
    with pytest.raises(ConfigError, match="norm=batch would change what it trains. Fix: drop norm=batch"):
        resume_argv(["train.py", f"resume={tmp_path}", "norm=batch"])
    with pytest.raises(ConfigError, match="is not a run directory"):
        resume_argv(["train.py", f"resume={tmp_path / 'nowhere'}"])
    assert resume_argv(["train.py", "norm=group"]) == ["train.py", "norm=group"]


def test_batches_resume_mid_epoch_and_follow_the_trainers_epoch():
    split = Split(torch.zeros(50, 1, 2, 2, dtype=torch.uint8), torch.arange(50))
    order = lambda batches: [y.tolist() for _, y in batches]  # noqa: E731
    full = TensorBatches(split, 8, shuffle=True, drop_last=True, seed=3)
    epoch0, epoch1 = order(full), order(full)
    assert epoch0 != epoch1 and len(epoch0) == 6 and full.dropped() == 2

    killed = TensorBatches(split, 8, shuffle=True, drop_last=True, seed=3)
    it = iter(killed)
    next(it), next(it)
    state = killed.state_dict()
    assert state == {"epoch": 0, "served": 2}
    resumed = TensorBatches(split, 8, shuffle=True, drop_last=True, seed=3)
    resumed.load_state_dict(state)
    assert order(resumed) == epoch0[2:] and order(resumed) == epoch1  # the rest of epoch 0, then epoch 1
    resumed.set_epoch(0)
    assert order(resumed) == epoch0  # the trainer's epoch decides the order


def test_no_batch_or_chunk_of_one_reaches_a_norm():
    assert batch_sizes(17, 8, drop_last=False) == [8, 9]  # a last image joins the batch before it
    assert batch_sizes(18, 8, drop_last=False) == [8, 8, 2] and batch_sizes(17, 8, drop_last=True) == [8, 8]
    assert [len(c) for c in split_batch(torch.zeros(9, 3), 4)] == [4, 5]
    split = Split(torch.zeros(21, 1, 2, 2, dtype=torch.uint8), torch.arange(21))
    assert [len(y) for _, y in TensorBatches(split, 10, shuffle=False, drop_last=False)] == [10, 11]


def test_a_dropped_partial_batch_is_said_once(caplog):
    from normlab.data import build_image_datamodule

    data = build_image_datamodule({"name": "mnist5k", "batch": 64, "subset": 1000}, seed=0)
    data.setup()
    with caplog.at_level("INFO", logger="normlab.data.module"):
        data.train_dataloader(), data.train_dataloader()
    said = [r.getMessage() for r in caplog.records if "partial batch" in r.getMessage()]
    assert said == [
        "training leaves out the last partial batch of every epoch: 40 of 1000 images per device "
        "(a different few each epoch, since the order changes)"
    ]


# --- divergence ------------------------------------------------------------------------------


class StubTrainer:
    class strategy:  # noqa: N801 - stands in for trainer.strategy
        @staticmethod
        def reduce(t, reduce_op):
            return t

    global_step = 0


def test_divergence_is_read_on_the_host_only_every_n_steps(monkeypatch):
    guard, trainer = DivergenceGuard(check_every=4), StubTrainer()
    reads = []  # every device-to-host read of a tensor, by step
    for name in ("__int__", "__bool__", "__float__", "item"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda t, real=real: reads.append(trainer.global_step) or real(t))
    for step, loss in enumerate([1.0, float("nan"), 2.0], start=1):
        trainer.global_step = step
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, step - 1)
    assert reads == []  # three steps, a NaN among them, and not one read
    trainer.global_step = 4
    with pytest.raises(
        Diverged, match="training diverged at step 2: the loss or the weights became NaN or infinite"
    ) as info:
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(3.0)}, None, 3)
    monkeypatch.undo()
    assert info.value.step == 2 and reads == [4]


def test_an_absurd_learning_rate_stops_the_run_as_diverged_with_good_weights_kept(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(Diverged) as info:
        run.train(compose_into(run_dir, ["task.optim.lr=1e6", "checkpoint.every_n_steps=2"]))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_step"] == info.value.step
    assert summary["error"].startswith("Diverged: training diverged at step")
    assert 0 <= summary["steps"] - summary["diverged_step"] < 2  # stopped at the next check (every 2 steps)
    for name in ("last.ckpt", "best.ckpt"):
        path = run_dir / "checkpoints" / name
        if path.exists():  # written before the loss went bad, never after
            ckpt = torch.load(path, weights_only=False)
            assert ckpt["global_step"] < summary["diverged_step"]
            assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert (run_dir / "checkpoints" / "last.ckpt").exists(), "lr=1e6 should take a few steps to blow up"


# --- atomic checkpoints and the report -------------------------------------------------------


def test_a_checkpoint_write_that_dies_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)

    def dies_halfway(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path) == {"step": 1} and os.listdir(tmp_path) == ["last.ckpt"]


def test_the_report_counts_how_runs_ended(tmp_path):
    for i, status in enumerate(["completed", "failed", "diverged", "failed"]):
        (tmp_path / str(i)).mkdir()
        summary = {
            "status": status,
            "task": "classify",
            "norm": "batch",
            "batch": 8,
            "seed": i,
            "metrics": {"test/err": 10.0} if status == "completed" else {},
            "config": {"model": {"name": "resnet8"}, "norm": {"name": "batch"}, "data": {"batch": 8}},
        }
        if status == "diverged":
            summary.update(error="Diverged: training diverged at step 7", diverged_step=7)
        (tmp_path / str(i) / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "summary.json").write_text("{")
    result = report(tmp_path)
    assert result.failed == 4
    assert "1 completed runs, 4 not completed (1 diverged, 2 failed, 1 unreadable)." in result.markdown
    assert "**diverged**: Diverged: training diverged at step 7" in result.markdown


# --- sweeps and the command line -------------------------------------------------------------


def wandb_log(summary: dict) -> str:
    return (Path(summary["wandb_dir"]) / "logs" / "debug.log").read_text()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two jobs, the first failing after its W&B run started (a subset larger than the data)."""
    logs = tmp_path_factory.mktemp("sweep")
    res = run_cli(
        "-m",
        "data.subset=99999,200",
        "model=resnet8",
        "debug=fast_dev_run",
        "threads=1",
        "trainer.enable_checkpointing=true",
        "trainer.enable_progress_bar=false",
        f"paths.log_dir={logs}",
    )
    (sweep_dir,) = logs.glob("multiruns/*")
    return res, sweep_dir


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(sweep):
    res, sweep_dir = sweep
    assert res.returncode != 0, "the sweep's exit status says a job failed"
    failed, done = (json.loads((sweep_dir / j / "summary.json").read_text()) for j in ("0", "1"))
    assert failed["status"] == "failed" and "data.subset=99999 is more than the 4000 training images" in failed["error"]
    assert done["status"] == "completed", res.stderr[-2000:]
    assert "got exitcode: 1" in wandb_log(failed) and "got exitcode: 0" in wandb_log(done)  # W&B closed as failed
    assert "'seed': 0" in wandb_log(done)  # the seed is in the W&B config, as in summary.json
    result = report(sweep_dir)
    assert result.failed == 1 and "1 completed runs, 1 not completed (1 failed)" in result.markdown
    assert "**failed**: ConfigError: data.subset=99999" in result.markdown


@pytest.mark.slow
def test_a_job_resumes_by_its_directory_into_the_same_wandb_run(sweep):
    _, sweep_dir = sweep
    job = sweep_dir / "1"
    before = json.loads((job / "summary.json").read_text())
    res = run_cli(f"resume={job}", "trainer.max_epochs=2")
    assert res.returncode == 0, res.stderr[-2000:]
    after = json.loads((job / "summary.json").read_text())
    assert after["status"] == "completed" and after["resumes"] == 1 and after["epochs"] == 2
    assert after["wandb_id"] == before["wandb_id"] and after["started"] == before["started"]
    assert sorted(p.name.rsplit("-", 1)[-1] for p in (job / "wandb").glob("offline-run-*")) == [before["wandb_id"]] * 2
    assert "data.subset=200" in (job / ".hydra" / "overrides.yaml").read_text()  # the job's own overrides
    with open(job / "csv" / "metrics.csv", newline="") as f:
        assert {r["epoch"] for r in csv.DictReader(f)} >= {"0", "1"}  # the first attempt's rows are kept
