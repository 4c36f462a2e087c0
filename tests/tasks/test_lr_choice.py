"""The learning-rate protocol: winners picked on val per arm and batch, edges flagged, and the
final sweep's runs reading their own rate."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from normlab.errors import ConfigError
from normlab.report import report
from normlab.tasks import lr_choice
from tests.report.test_report import fake_run


def grid(rows):
    return pd.DataFrame(rows, columns=["arm", "batch", "lr", "seed", "val/err"])


def test_the_lowest_mean_val_error_wins_and_a_winner_at_the_grid_edge_is_flagged():
    choice = lr_choice.choose(
        grid(
            [
                ("batch", 32, 0.05, 0, 30.0),
                ("batch", 32, 0.1, 0, 28.0),
                ("batch", 32, 0.2, 0, 29.0),  # inside
                ("batch", 2, 0.05, 0, 35.0),
                ("batch", 2, 0.1, 0, 36.0),
                ("batch", 2, 0.2, 0, 37.0),  # lowest edge
                ("group+ws", 2, 0.05, 0, 31.0),
                ("group+ws", 2, 0.1, 0, 30.0),
                ("group+ws", 2, 0.2, 0, 33.0),
                ("group+ws", 2, 0.2, 1, 25.0),  # two seeds at 0.2: their mean (29) wins, at the highest edge
            ]
        )
    ).set_index(["arm", "batch"])
    assert choice.loc[("batch", 32), "lr"] == 0.1 and not choice.loc[("batch", 32), "edge"]
    assert choice.loc[("batch", 2), "lr"] == 0.05 and choice.loc[("batch", 2), "where"] == "lowest"
    assert choice.loc[("group+ws", 2), "lr"] == 0.2 and choice.loc[("group+ws", 2), "where"] == "highest"
    assert choice.loc[("group+ws", 2), "val/err"] == pytest.approx(29.0)
    assert choice.loc[("batch", 32), "grid"] == "0.05 0.1 0.2"
    assert "**edge** (lowest)" in lr_choice.markdown(choice.reset_index())


def cfg(norm, ws, batch, path):
    return OmegaConf.create(
        {
            "norm": {"name": norm},
            "model": {"ws": ws},
            "data": {"batch": batch},
            "task": {"optim": {"lr": 0.1, "lr_choice": str(path)}},
        }
    )


def test_a_run_of_the_final_sweep_takes_its_arms_rate_and_a_missing_one_is_one_line(tmp_path):
    path = tmp_path / "lr_choice.yaml"
    rates = [{"arm": "group+ws", "batch": 2, "lr": 0.2}, {"arm": "batch", "batch": 2, "lr": 0.05}]
    lr_choice.write(pd.DataFrame(rates), path)
    run = cfg("group", True, 2, path)
    assert lr_choice.apply(run) == 0.2 and run.task.optim.lr == 0.2
    have = "batch at \\[2\\], group\\+ws at \\[2\\]"
    with pytest.raises(ConfigError, match=f"no learning rate for group at batch 2.*{have}"):
        lr_choice.apply(cfg("group", False, 2, path))
    with pytest.raises(ConfigError, match="cannot be read"):
        lr_choice.apply(cfg("group", True, 2, tmp_path / "missing.yaml"))
    unset = cfg("group", True, 2, "")
    assert lr_choice.apply(unset) is None and unset.task.optim.lr == 0.1


def test_the_report_of_an_lr_sweep_splits_rows_by_rate_and_writes_the_choice(tmp_path):
    i = 0
    for norm, ws in (("batch", False), ("group", True)):
        for lr in (0.05, 0.1, 0.2):
            d = fake_run(tmp_path, i, norm, ws, 8, 0, metrics={"val/err": 30 + 40 * abs(lr - (0.1 if ws else 0.05))})
            summary = json.loads((d / "summary.json").read_text())
            summary["config"]["task"] = {"optim": {"lr": lr}}
            (d / "summary.json").write_text(json.dumps(summary))
            i += 1
    result = report(tmp_path)
    assert len(result.table) == 6 and "task.optim.lr" in result.table.columns
    assert yaml.safe_load((tmp_path / "lr_choice.yaml").read_text()) == {"batch": {8: 0.05}, "group+ws": {8: 0.1}}
    assert "Learning rate chosen on val/err" in result.markdown and "**edge** (lowest)" in result.markdown


@pytest.mark.slow
def test_a_training_run_records_and_trains_with_the_chosen_rate(compose, tmp_path):
    from normlab.run import train

    path = tmp_path / "lr_choice.yaml"
    lr_choice.write(pd.DataFrame([{"arm": "group+ws", "batch": 4, "lr": 0.025}]), path)
    summary = train(
        compose(
            [
                "norm=group",
                "model.ws=true",
                "data.batch=4",
                "debug=fast_dev_run",
                "data.subset=200",
                "data.eval_batch=50",
                f"task.optim.lr_choice={path}",
            ]
        )
    )
    assert summary["status"] == "completed"
    assert summary["config"]["task"]["optim"]["lr"] == 0.025
    assert summary["scale"]["lr"] == pytest.approx(0.025 * 4 / 32)  # still scaled with the batch


def test_past_edges_steps_once_beyond_each_edge_winner_and_names_the_arm_as_overrides():
    choice = lr_choice.choose(
        grid(
            [
                ("batch", 32, 0.05, 0, 30.0),
                ("batch", 32, 0.1, 0, 28.0),
                ("batch", 32, 0.2, 0, 29.0),  # inside
                ("layer", 32, 0.05, 0, 35.0),
                ("layer", 32, 0.1, 0, 36.0),
                ("layer", 32, 0.2, 0, 37.0),  # lowest
                ("instance+ws", 32, 0.05, 0, 40.0),
                ("instance+ws", 32, 0.1, 0, 39.0),
                ("instance+ws", 32, 0.2, 0, 38.0),
            ]
        )
    )
    assert sorted(lr_choice.past_edges(choice)) == [("instance+ws", 32, 0.4), ("layer", 32, 0.025)]
    assert lr_choice.arm_overrides("instance+ws") == ["norm=instance", "model.ws=true"]
    assert lr_choice.arm_overrides("layer") == ["norm=layer", "model.ws=false"]
