"""End to end: configs compose, every norm trains, sweeps make one run directory, summary
and W&B run per job, and a bad config gives one line, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from normlab.norms import NORMS, supports
from normlab.run import train
from normlab.run.summary import RunSummary, code_version

ROOT = Path(__file__).resolve().parents[2]
FAST = ["debug=fast_dev_run", "data.subset=200"]
# The batch-statistics diagnostics of batch-dependent norms still run, on 50 test images (in
# chunks of 2) and 8 PreciseBN batches instead of 500 and 200: ten times fewer forwards.
SMALL_EVAL = ["data.eval_batch=50", "callbacks.batch_stats.precise_batches=8"]


def run_cli(*args, cwd=ROOT, timeout=300):
    env = dict(os.environ, WANDB_MODE="offline", HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_config_composes_with_the_documented_groups(compose):
    cfg = compose(["norm=group", "data.batch=2"])
    assert cfg.norm.name == "group" and cfg.data.batch == 2
    assert {"task", "model", "norm", "data", "trainer", "logger", "paths"} <= set(cfg)


def sweep_of(experiment: str, *overrides: str):
    """The job config of ``experiment`` (without hydra) and its sweep axes, as lists."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", *overrides], return_hydra_config=True)
    axes = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    job = OmegaConf.to_container(cfg, resolve=False)
    del job["hydra"]
    return job, axes


def test_norms_vision_and_norms_zoo_split_one_sweep_of_every_image_norm():
    vision, vision_axes = sweep_of("norms_vision")
    zoo, zoo_axes = sweep_of("norms_zoo")
    # The paper's Table 1 (BN, LN, IN, GN), each with and without weight standardization.
    assert sorted(vision_axes["norm"]) == ["batch", "group", "instance", "layer"]
    assert sorted(vision_axes["model.ws"]) == ["false", "true"] and zoo_axes["model.ws"] == ["false"]
    assert not set(vision_axes["norm"]) & set(zoo_axes["norm"])
    # Together: every image norm (sync_batch is batch on one process; group1 and cond_instance are
    # layer and instance by identity, checked in tests/norms).
    image_norms = {n for n in NORMS if supports(n, "nchw")} - {"sync_batch", "group1", "cond_instance"}
    assert sorted(vision_axes["norm"] + zoo_axes["norm"]) == sorted(image_norms)
    assert (vision["name"], zoo["name"]) == ("norms_vision", "norms_zoo")
    # Otherwise the same runs: the same seeds, and a norm's job config is the same in either.
    assert vision_axes["seed"] == zoo_axes["seed"] == ["0", "1", "2"]
    vision, _ = sweep_of("norms_vision", "norm=frn")
    zoo, _ = sweep_of("norms_zoo", "norm=frn")
    assert {**vision, "name": None} == {**zoo, "name": None}
    assert (vision["model"]["name"], vision["data"]["batch"], vision["trainer"]["max_epochs"]) == ("resnet10", 32, 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NORMS))
def test_every_norm_trains_at_batch_2(compose, name):
    if not supports(name, "nchw"):
        pytest.skip(f"{name} has no meaning for images")
    cfg = compose([f"norm={name}", "data.batch=2", *FAST, *SMALL_EVAL])
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert 0 <= summary["metrics"]["test/err"] <= 100
    on_disk = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["norm"] == name and on_disk["batch"] == 2
    assert Path(on_disk["wandb_dir"]).is_dir()


def test_summary_names_the_commit_of_the_code_that_ran(tmp_path):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git checkout")
    config = {
        "task": {"name": "classify"},
        "model": {"name": "resnet8"},
        "norm": {"name": "batch"},
        "data": {"name": "mnist5k", "batch": 2},
        "seed": 0,
    }
    code = json.loads((RunSummary(tmp_path, config).path).read_text())["code"]
    assert code["commit"] == head.stdout.strip() and isinstance(code["dirty"], bool)
    assert code_version(tmp_path) is None  # not a checkout: nothing to name


@pytest.mark.slow
def test_cli_runs_exactly_as_typed(tmp_path):
    res = run_cli("norm=group", "data.batch=2", *FAST, f"paths.log_dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-2000:]
    (summary,) = tmp_path.glob("runs/*/summary.json")
    assert json.loads(summary.read_text())["status"] == "completed"


@pytest.mark.slow
def test_multirun_gives_every_job_its_own_dir_summary_and_wandb_run(tmp_path):
    res = run_cli(
        "-m", "norm=batch,group", "data.batch=2,8", *FAST, *SMALL_EVAL, f"paths.log_dir={tmp_path}", timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in tmp_path.glob("multiruns/*/*/summary.json")]
    assert sorted((s["norm"], s["batch"]) for s in summaries) == [
        ("batch", 2),
        ("batch", 8),
        ("group", 2),
        ("group", 8),
    ]
    assert all(s["status"] == "completed" for s in summaries)
    wandb_runs = {s["wandb_dir"] for s in summaries}
    assert len(wandb_runs) == 4 and all(Path(w).is_dir() for w in wandb_runs)


def test_cfg_job_prints_the_composed_config():
    res = run_cli("--cfg", "job", "norm=group")
    assert res.returncode == 0 and "num_groups: 8" in res.stdout and "batch: 32" in res.stdout


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.batch=0", "data.batch=0 is not a batch size"),
        ("task.name=clasify", "unknown task 'clasify'"),
        ("+norm.num_group=4", "norm 'batch' has no option num_group"),
    ],
)
def test_bad_config_is_refused_before_anything_is_built(compose, override, message):
    from normlab.errors import ConfigError
    from normlab.run.config_check import check_config

    with pytest.raises(ConfigError, match=message):
        check_config(compose([override]))


def test_bad_norm_name_is_one_line_with_the_fix(tmp_path):
    res = run_cli("norm.name=grop", f"paths.log_dir={tmp_path}", *FAST)
    assert res.returncode == 2
    assert "unknown norm 'grop'" in res.stderr and "Did you mean 'group'?" in res.stderr
    assert "Traceback" not in res.stderr
    (summary,) = tmp_path.glob("runs/*/summary.json")
    assert json.loads(summary.read_text())["status"] == "failed"
