"""Inputs a user meets in practice that used to end in a torch traceback: a file in an image
folder that is not an image, a damaged checkpoint to resume from, and one sample per batch with
a batch norm. Each is one line with the fix (exit 2), and a sweep records such a job as failed
and runs the others.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from cli_run import run_cli
from omegaconf import OmegaConf

from normlab.data.folder import load_image_folder
from normlab.data.images import read_image
from normlab.data.photos import load_style_folder
from normlab.errors import ConfigError
from normlab.run.config_check import check_config
from normlab.run.resume import checkpoint_damage, resume_point

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(res) -> str:
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, res.stderr[-2000:]
    return lines[0]


# --- files that are not images ----------------------------------------------------------------


@pytest.fixture
def tree_with_bad_files(tmp_path):
    from torchvision.io import write_jpeg

    root = tmp_path / "tree"
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("test", 2)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                write_jpeg(
                    torch.randint(0, 255, (3, 8, 8), generator=g, dtype=torch.uint8), str(root / split / c / f"{i}.jpg")
                )
    (root / "train" / "cat" / "empty.jpg").write_bytes(b"")
    (root / "train" / "dog" / "page.jpg").write_text("<html>404 not found</html>")
    return root


def test_files_that_are_not_images_are_named_in_one_line_and_nothing_is_cached(tree_with_bad_files, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError) as info:
        load_image_folder(str(tree_with_bad_files), val_size=2, cache_dir=str(cache))
    message = str(info.value)
    assert "\n" not in message and "2 of 14 train image files are not images" in message
    assert "empty.jpg" in message and "page.jpg" in message and "data.skip_bad_images=true" in message
    assert not cache.exists() or not list(cache.iterdir())  # no partial decode cache for a later run


def test_skip_bad_images_leaves_them_out_with_a_count_and_a_fixed_file_is_decoded_again(
    tree_with_bad_files, tmp_path, caplog
):
    from torchvision.io import write_jpeg

    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING):
        data = load_image_folder(str(tree_with_bad_files), val_size=2, cache_dir=str(cache), skip_bad_images=True)
    assert "skipped 2 of 14 train image files" in caplog.text
    assert len(data.train) + len(data.val) == 12 and len(data.test) == 4
    assert sorted(data.train.y.tolist() + data.val.y.tolist()) == [0] * 6 + [1] * 6  # labels stay with their images
    assert len(list(cache.iterdir())) == 1
    write_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8), str(tree_with_bad_files / "train" / "cat" / "empty.jpg"))
    fixed = load_image_folder(str(tree_with_bad_files), val_size=2, cache_dir=str(cache), skip_bad_images=True)
    assert len(fixed.train) + len(fixed.val) == 13  # the cache of the old files was not reused
    assert len(list(cache.iterdir())) == 2


def test_a_style_folder_with_a_bad_file_says_which(tree_with_bad_files, tmp_path):
    root, style = tree_with_bad_files / "train", tree_with_bad_files / "test" / "cat" / "0.jpg"
    with pytest.raises(ConfigError, match=r"not images that can be decoded: .*(empty|page)\.jpg"):
        load_style_folder(
            str(root), str(style), val_size=2, load_size=8, eval_size=8, style_size=8, cache_dir=str(tmp_path / "cache")
        )
    images = load_style_folder(
        str(root),
        str(style),
        val_size=2,
        load_size=8,
        eval_size=8,
        style_size=8,
        cache_dir=str(tmp_path / "cache"),
        skip_bad_images=True,
    )
    assert len(images.train) + len(images.val) == 12 and len(images.val_names) == len(images.val)


def test_a_style_image_that_is_not_an_image_is_one_line(tree_with_bad_files):
    with pytest.raises(ConfigError, match="empty.jpg is not an image that can be decoded"):
        read_image(tree_with_bad_files / "train" / "cat" / "empty.jpg")


@pytest.mark.slow
def test_train_on_a_folder_with_a_bad_file_exits_2_with_one_line(tree_with_bad_files, tmp_path):
    res = run_cli(
        "data=image_folder",
        f"data.root={tree_with_bad_files}",
        "data.val_size=2",
        "model=resnet8",
        "debug=fast_dev_run",
        "logger=csv",
        "threads=1",
        f"paths.log_dir={tmp_path / 'logs'}",
    )
    assert "page.jpg" in one_line_error(res)


# --- a damaged checkpoint --------------------------------------------------------------------


@pytest.fixture
def stopped_run(compose, tmp_path):
    cfg = compose(["debug=fast_dev_run"])
    run = tmp_path / "stopped"
    (run / "checkpoints").mkdir(parents=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    (run / "summary.json").write_text(json.dumps({"status": "interrupted", "config": config}))
    torch.save({"state_dict": {"w": torch.ones(3)}, "global_step": 5}, run / "checkpoints" / "best.ckpt")
    torch.save({"state_dict": {"w": torch.ones(300)}, "global_step": 9}, run / "checkpoints" / "last.ckpt")
    return run, config


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_last_checkpoint_names_the_intact_best_one_and_the_command(stopped_run):
    run, config = stopped_run
    assert checkpoint_damage(run / "checkpoints" / "last.ckpt") is None
    truncate(run / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError) as info:
        resume_point(run, config)
    message = str(info.value)
    assert "\n" not in message and "checkpoints/last.ckpt is damaged" in message
    assert "best.ckpt is intact" in message
    assert f"python train.py resume={run} ckpt_path={run / 'checkpoints' / 'best.ckpt'}" in message
    chosen = resume_point(run, {**config, "ckpt_path": str(run / "checkpoints" / "best.ckpt")})
    assert chosen.ckpt_path == run / "checkpoints" / "best.ckpt"


def test_a_corrupted_byte_is_found_by_the_checksums(stopped_run):
    run, _ = stopped_run
    last = run / "checkpoints" / "last.ckpt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor data; the archive's directory is intact
    last.write_bytes(bytes(data))
    assert checkpoint_damage(last) is not None


def test_no_intact_checkpoint_says_to_start_again(stopped_run):
    run, config = stopped_run
    truncate(run / "checkpoints" / "last.ckpt")
    truncate(run / "checkpoints" / "best.ckpt")
    with pytest.raises(ConfigError, match="no intact checkpoint is left in checkpoints/; start the run again"):
        resume_point(run, config)


def test_a_damaged_ckpt_path_is_refused_by_the_config_check(compose, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ConfigError, match="bad.ckpt cannot be loaded: not a whole checkpoint file"):
        check_config(compose([f"ckpt_path={bad}"]))


# --- one sample per batch ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [["task=lm", "norm=batch", "data.batch=1"], ["norm=batch", "data.batch=1"], ["norm=bln_pooled", "data.batch=1"]],
)
def test_one_sample_per_batch_is_per_sample_statistics_with_a_warning_not_a_refusal(compose, caplog, overrides):
    with caplog.at_level(logging.WARNING):
        check_config(compose(overrides))
    assert "at one sample per batch normalizes in training with the statistics of each sample's own" in caplog.text
    if "task=lm" in overrides:
        assert "sees future tokens" in caplog.text


@pytest.mark.slow
def test_a_sweep_runs_batch_one_where_it_means_something_and_refuses_one_value(tmp_path):
    """Job 0: a context of one token at batch 1 gives BatchNorm one value per channel (refused,
    recorded as failed). Job 1: batch 1 of 8-token sequences trains (per-sequence statistics)."""
    logs = tmp_path / "logs"
    res = run_cli(
        "-m",
        "task=lm",
        "norm=batch",
        "data.batch=1",
        "model.block_size=1,8",
        "debug=fast_dev_run",
        "logger=csv",
        "threads=1",
        f"paths.log_dir={logs}",
    )
    (sweep,) = logs.glob("multiruns/*")
    failed, done = (json.loads((sweep / j / "summary.json").read_text()) for j in ("0", "1"))
    assert failed["status"] == "failed" and "has one value per channel" in failed["error"], res.stderr[-2000:]
    assert done["status"] == "completed", res.stderr[-2000:]


@pytest.mark.slow
def test_one_value_per_channel_is_one_line_and_exit_2(tmp_path):
    res = run_cli(
        "task=lm",
        "norm=batch",
        "data.batch=1",
        "model.block_size=1",
        "debug=fast_dev_run",
        "logger=csv",
        "threads=1",
        f"paths.log_dir={tmp_path / 'logs'}",
    )
    assert "has one value per channel" in one_line_error(res)
