"""Scaling out: DDP over CPU processes (gloo), the global batch and learning rate, ghost batches as
devices, SyncBatchNorm's conversion and fallback, parallel sweeps, and the launcher configs."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cli_run import run_cli

from normlab.errors import ConfigError
from normlab.norms import build_norm

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "debug=fast_dev_run",
    "data.subset=200",
    "data.eval_batch=50",
    "callbacks.batch_stats.precise_batches=8",
    "trainer.enable_progress_bar=false",
    "threads=1",
]  # one thread per process: the machine may have two cores


def summaries(pattern: str, root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob(pattern))]


def offline_runs(run_dir) -> list[Path]:
    return list(Path(run_dir).glob("wandb/offline-run-*"))


# --- DDP over CPU processes ------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_cpu_trains_two_ranks_that_hold_identical_weights_and_write_one_run(tmp_path):
    res = run_cli("trainer=ddp_cpu", "trainer.devices=2", "data.batch=4", *FAST, f"paths.log_dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]  # no directory of rank 1's own
    (run_dir,) = tmp_path.glob("runs/*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["steps"] == 1
    # Both ranks fingerprinted their weights after the step, and they are the same.
    fingerprints = summary["ddp"]["weights_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1] and summary["ddp"]["weights_identical"]
    # 4 images per device x 2 devices; lr 0.1 at 32 images, scaled linearly.
    assert summary["scale"] == {
        "world_size": 2,
        "batch_per_device": 4,
        "global_batch": 8,
        "lr_scaling": "linear",
        "base_lr": 0.1,
        "base_batch": 32,
        "lr": pytest.approx(0.025),
        "norm_images": 4,
    }
    log = (run_dir / "train.log").read_text()
    assert "scale: 2 devices x 4 images = global batch 8; lr 0.1 x 8 / 32 = 0.025" in log
    assert len(offline_runs(run_dir)) == 1
    assert not list(run_dir.glob("*ddp_process*"))  # Lightning's per-rank Hydra log: rank 1 ran without Hydra


@pytest.mark.slow
def test_ddp_inside_a_multirun_writes_every_job_once_into_its_own_directory(tmp_path):
    res = run_cli("-m", "trainer=ddp_cpu", "norm=sync_batch,group", "data.batch=2", *FAST, f"paths.log_dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep,) = tmp_path.glob("multiruns/*")  # rank 1 started no sweep of its own
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    jobs = summaries("*/summary.json", sweep)
    assert [(s["norm"], s["status"], s["world_size"]) for s in jobs] == [
        ("sync_batch", "completed", 2),
        ("group", "completed", 2),
    ]
    assert all(s["ddp"]["weights_identical"] for s in jobs)  # job 1 started ranks of its own, and they agree
    assert all(len(offline_runs(s["run_dir"])) == 1 for s in jobs)
    # sync_batch on CPU processes says that it is BatchNorm per device.
    assert jobs[0]["scale"]["norm_images"] == 2 and jobs[1]["scale"]["norm_images"] is None
    assert "norm=sync_batch falls back to BatchNorm" in (sweep / "0" / "train.log").read_text()


def test_ddp_is_refused_where_lightning_cannot_start_its_ranks(compose, tmp_path):
    from normlab.run import train

    # From Python (here pytest; likewise a joblib or Ray worker) the ranks would run the wrong script.
    with pytest.raises(ConfigError, match=r"starts its other 1 rank\(s\) by running the main script again.*Fix:"):
        train(compose(["trainer=ddp_cpu", *FAST, "logger=none"]))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"
    with pytest.raises(ConfigError, match="runs every rank, rank 0 too, in a new process.*Fix: use trainer.strategy="):
        train(compose(["trainer=ddp_cpu", "trainer.strategy=ddp_spawn", *FAST, "logger=none"]))


def test_a_batch_larger_than_each_devices_share_of_the_data_is_refused():
    from normlab.data.module import ImageDataModule
    from normlab.data.splits import ImageSplits, Split

    split = Split(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.zeros(10, dtype=torch.long))
    data = ImageDataModule(lambda: ImageSplits(split, split, split, ["a"]), batch=6)
    data.setup()
    data.trainer = SimpleNamespace(global_rank=0, world_size=2)  # 5 images per device
    with pytest.raises(ConfigError, match="data.batch=6 is more than the 5 training images each of the 2 device"):
        data.train_dataloader()


def test_ranks_in_sync_tells_identical_from_different_weights():
    from normlab.callbacks.rank_sync import RanksInSync

    model = torch.nn.Linear(3, 2)
    for other in ("same", "different"):
        callback = RanksInSync()

        def gather(mine, other=other):
            return torch.stack([mine, mine if other == "same" else mine + 1])

        trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(all_gather=gather))
        callback.on_train_end(trainer, SimpleNamespace(parameters=model.parameters, device=torch.device("cpu")))
        assert callback.record()["weights_identical"] == (other == "same")
    assert RanksInSync().record() == {}  # one process: nothing to compare


@pytest.mark.parametrize(
    "overrides,present",
    [
        (["trainer=cpu"], False),  # one device: no other rank to compare with
        (["trainer=ddp_cpu", "trainer.devices=1"], False),  # DDP strategy, but a single process
        (["trainer=ddp_cpu"], True),  # 2 processes
        (["trainer=cpu", "trainer.devices=2"], True),  # several devices, strategy=auto
    ],
)
def test_ranks_in_sync_is_registered_only_for_runs_of_several_processes(compose, tmp_path, overrides, present):
    from normlab.callbacks.rank_sync import RanksInSync
    from normlab.run.trainer import build_trainer

    trainer = build_trainer(compose([*overrides, "logger=none"]), tmp_path, [])
    assert any(isinstance(c, RanksInSync) for c in trainer.callbacks) == present


@pytest.mark.parametrize(
    "trainer,several",
    [
        ({"devices": 1, "num_nodes": 1}, False),
        ({"devices": "1"}, False),
        ({"devices": [0]}, False),
        ({"devices": "1,"}, False),
        ({"devices": 2}, True),
        ({"devices": "2"}, True),
        ({"devices": "0,1"}, True),
        ({"devices": [0, 1]}, True),
        ({"devices": 1, "num_nodes": 2}, True),
        ({"devices": "auto"}, True),
        ({"devices": -1}, True),  # maybe all of a node's GPUs: kept
    ],
)
def test_several_processes_reads_devices_and_nodes_as_lightning_does(trainer, several):
    from normlab.callbacks.rank_sync import several_processes

    assert several_processes(trainer) == several


@pytest.mark.parametrize(
    "env,zero",
    [
        ({}, True),  # one process, or Lightning's launching rank 0
        ({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, False),  # a rank Lightning's launcher started
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # rank 0 of the second node
        ({"SLURM_PROCID": "3"}, False),
        ({"SLURM_PROCID": "0"}, True),  # srun tasks
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"RANK": "2", "LOCAL_RANK": "0"}, False),  # torchrun
    ],
)
def test_only_global_rank_zero_writes_the_run(monkeypatch, env, zero):
    from normlab.run import ddp

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "WORLD_SIZE", ddp.CONFIG_ENV):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert ddp.is_rank_zero() == zero
    monkeypatch.setenv(ddp.CONFIG_ENV, json.dumps({"seed": 3}))
    # Only a rank that Lightning started trains the handed-over config; rank 0 composes its own.
    assert ddp.handed_over() == (None if os.environ.get("LOCAL_RANK", "0") == "0" else {"seed": 3})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without GPUs")
def test_trainer_ddp_without_gpus_points_to_ddp_cpu(compose):
    from normlab.run.config_check import check_config

    with pytest.raises(ConfigError, match="torch sees no GPU on this machine. Fix: use trainer=ddp_cpu"):
        check_config(compose(["trainer=ddp"]))


# --- global batch and learning rate ----------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,world,want",
    [
        (["data.batch=2"], 8, {"global_batch": 16, "lr": 0.1 * 16 / 32, "norm_images": 2}),  # GN paper's 8 GPUs x 2
        (["data.batch=32"], 1, {"global_batch": 32, "lr": 0.1, "norm_images": 32}),
        (["norm=ghost_batch", "norm.virtual_batch=4", "data.batch=16"], 2, {"global_batch": 32, "norm_images": 4}),
        (["norm=group", "data.batch=4"], 2, {"global_batch": 8, "norm_images": None}),
        (["task=lm", "data.batch=4"], 2, {"global_batch": 8, "lr": 2e-3, "lr_scaling": "none"}),  # Adam: unscaled
    ],
)
def test_global_batch_and_learning_rate_follow_images_per_device_and_world_size(compose, overrides, world, want):
    from normlab.run.batch_scale import scale_of

    scale = scale_of(compose(overrides), world, "cpu")
    for key, value in want.items():
        assert scale[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_sync_batch_counts_all_devices_only_where_it_syncs(compose):
    from normlab.run.batch_scale import describe, scale_of

    cfg = compose(["norm=sync_batch", "data.batch=2"])
    assert scale_of(cfg, 8, "cuda")["norm_images"] == 16
    line, warning = describe(scale_of(cfg, 8, "cuda"), "sync_batch")
    assert "normalizes over 16 images of all devices" in line and warning is None
    for world, why in ((2, "needs CUDA tensors"), (1, "single process")):
        line, warning = describe(scale_of(cfg, world, "cpu"), "sync_batch")
        assert "over 2 images" in line and "falls back to BatchNorm" in warning and why in warning


# --- SyncBatchNorm: conversion for GPUs, BatchNorm elsewhere ----------------------------------


def test_sync_batch_plugin_only_for_gpus():
    from normlab.callbacks.layer_sync import SyncBatchNormPlugin, sync_plugin

    assert isinstance(sync_plugin("sync_batch", "gpu"), SyncBatchNormPlugin)
    assert sync_plugin("sync_batch", "cpu") is None and sync_plugin("batch", "gpu") is None


@pytest.mark.parametrize("layout,shape", [("nchw", (6, 4, 3, 3)), ("nlc", (6, 5, 4))])
def test_sync_batch_converts_to_torch_syncbatchnorm_and_back_sharing_weights(layout, shape):
    from normlab.callbacks.layer_sync import SyncBatchNormPlugin
    from normlab.norms.sync_batch import CrossDeviceBatchNorm, SyncBatchNorm

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        build_norm("sync_batch", 4, layout), torch.nn.Sequential(build_norm("batch", 4, layout))
    )
    torch.nn.init.normal_(model[0].weight)
    reference = build_norm("batch", 4, layout)
    reference.load_state_dict(model[0].state_dict())
    weight = model[0].weight
    x = torch.randn(*shape) * 3 + 1

    SyncBatchNormPlugin().apply(model)
    assert type(model[0]) is CrossDeviceBatchNorm and isinstance(model[0], torch.nn.SyncBatchNorm)
    assert type(model[1][0]).__name__ == "BatchNorm"  # plain BatchNorm stays per device
    assert model[0].weight is weight
    # Without a process group torch's SyncBatchNorm is BatchNorm: the same output and running statistics.
    torch.testing.assert_close(model[0](x), reference(x))
    torch.testing.assert_close(model[0].running_var, reference.running_var)
    SyncBatchNormPlugin().revert(model)
    assert type(model[0]) is SyncBatchNorm and model[0].weight is weight
    torch.testing.assert_close(model[0].running_mean, reference.running_mean)


# --- ghost batches are devices ---------------------------------------------------------------

RANK = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) * 2 + 1  # the same 4 images on both ranks
    w = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)          # weights of the loss
    bn = torch.nn.BatchNorm2d(3, momentum=0.3).double()  # torch's own: the per-device BatchNorm of DDP
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    model = DistributedDataParallel(bn)
    part = x[2 * rank : 2 * rank + 2].clone().requires_grad_()  # this device's 2 images
    y = model(part)
    (y * w[2 * rank : 2 * rank + 2]).mean().backward()  # DDP averages the parameter gradients
    torch.save({"y": y.detach(), "x_grad": part.grad, "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad,
                "running_mean": bn.running_mean, "running_var": bn.running_var}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ghost_batchnorm_on_one_process_is_batchnorm_on_two_gloo_ranks(tmp_path):
    """Hoffer et al. (2017) simulate small per-device batches on one device; here, against real DDP."""
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), str(port), str(tmp_path)], env=env, stderr=subprocess.PIPE, text=True
        )
        for r in range(2)
    ]
    try:
        errors = [p.communicate(timeout=180)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], errors
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
    w = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    ghost = build_norm("ghost_batch", 3, virtual_batch=2, momentum=0.3).double()
    with torch.no_grad():
        ghost.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        ghost.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    y = ghost(x)
    (y * w).mean().backward()

    exact = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y.detach(), torch.cat([r["y"] for r in ranks]), **exact)  # same outputs
    # The loss over 4 images is the mean of the two devices' losses over 2: parameter gradients are
    # DDP's average, input gradients each device's own, halved.
    for name in ("weight_grad", "bias_grad"):
        torch.testing.assert_close(ranks[0][name], ranks[1][name], **exact)
        torch.testing.assert_close(getattr(ghost, name.split("_")[0]).grad, ranks[0][name], **exact)
    torch.testing.assert_close(x.grad, torch.cat([r["x_grad"] for r in ranks]) / 2, **exact)
    # Running statistics: one update towards the mean of the ghosts' statistics = the mean of the devices'.
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(ghost, name), (ranks[0][name] + ranks[1][name]) / 2, **exact)
    assert (ranks[0]["running_mean"] - ranks[1]["running_mean"]).abs().max() > 0.01  # the devices did differ


# --- sweeps beyond one process ---------------------------------------------------------------


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
@pytest.mark.skipif(not _has("hydra_plugins.hydra_joblib_launcher"), reason="pip install -e '.[sweep]'")
def test_joblib_runs_jobs_in_parallel_each_with_its_own_dir_summary_and_wandb_run(tmp_path):
    res = run_cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "norm=batch,group",
        "data.batch=2,4",
        *FAST,
        f"paths.log_dir={tmp_path}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in res.stdout + res.stderr
    (sweep,) = tmp_path.glob("multiruns/*")
    jobs = summaries("*/summary.json", sweep)
    assert sorted((s["norm"], s["batch"]) for s in jobs) == [("batch", 2), ("batch", 4), ("group", 2), ("group", 4)]
    assert all(s["status"] == "completed" for s in jobs)
    assert len({s["run_dir"] for s in jobs}) == 4 and len({s["wandb_dir"] for s in jobs}) == 4
    assert all(len(offline_runs(s["run_dir"])) == 1 for s in jobs)


def compose_hydra(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


LAUNCHERS = [
    ("joblib", "hydra_plugins.hydra_joblib_launcher", "JoblibLauncher"),
    ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),
    ("slurm", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),
    ("ray", "hydra_plugins.hydra_ray_launcher", "RayLauncher"),
]


@pytest.mark.parametrize("name,plugin,target", LAUNCHERS)
def test_launcher_configs_compose(name, plugin, target):
    if not _has(plugin):
        pytest.skip(f"{plugin} is not installed (pip install -e '.[{'ray' if 'ray' in plugin else 'slurm'}]')")
    cfg = compose_hydra([f"hydra/launcher={name}"])
    assert cfg.hydra.launcher._target_.endswith(target)


@pytest.mark.skipif(not _has("hydra_plugins.hydra_submitit_launcher"), reason="pip install -e '.[slurm]'")
def test_slurm_launcher_asks_for_one_task_and_one_gpu_per_device():
    from hydra.utils import instantiate

    cfg = compose_hydra(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"])
    launcher = instantiate(cfg.hydra.launcher)  # what submitit gets: the interpolations resolved
    assert {k: launcher.params[k] for k in ("nodes", "tasks_per_node", "gpus_per_node")} == {
        "nodes": 2,
        "tasks_per_node": 8,
        "gpus_per_node": 8,
    }


@pytest.mark.skipif(not _has("hydra_plugins.hydra_submitit_launcher"), reason="pip install -e '.[slurm]'")
def test_cfg_hydra_shows_the_slurm_launcher():
    res = run_cli("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "--cfg", "hydra", timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" in res.stdout
    assert "tasks_per_node: ${trainer.devices}" in res.stdout
