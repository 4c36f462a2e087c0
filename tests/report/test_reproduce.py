"""scripts/reproduce.py: every part's commands name real experiments, chain the lr choice, and
copy the report's figures to where the docs link them."""

from __future__ import annotations

from pathlib import Path

import pytest

from normlab.errors import ConfigError
from normlab.report import reproduce

CONF = Path(__file__).resolve().parents[2] / "conf" / "experiment"


@pytest.mark.parametrize("name", sorted(reproduce.PARTS))
def test_every_part_runs_experiments_that_exist_and_reports_each_sweep(name, tmp_path):
    cmds = reproduce.commands(reproduce.PARTS[name], tmp_path, "cifar")
    sweeps = [c for c in cmds if c[1] == "train.py"]
    reports = [c for c in cmds if c[1] == "scripts/report.py"]
    assert sweeps and len(sweeps) == len(reports)
    for sweep, rep in zip(sweeps, reports):
        experiment = next(a.split("=", 1)[1] for a in sweep if a.startswith("experiment="))
        assert (CONF / f"{experiment}.yaml").exists()
        assert f"hydra.sweep.dir={tmp_path / experiment}" in sweep and rep[2] == str(tmp_path / experiment)
        assert ("data.root=cifar" in sweep) == reproduce.PARTS[name].cifar


def test_the_final_gn_vs_bn_sweep_reads_the_lr_sweeps_choice(tmp_path):
    lr_sweep, final = (c for c in reproduce.commands(reproduce.PARTS["gn_vs_bn"], tmp_path, None) if c[1] == "train.py")
    assert "experiment=gn_vs_bn_lr" in lr_sweep and "experiment=gn_vs_bn" in final
    assert f"task.optim.lr_choice={tmp_path / 'gn_vs_bn_lr' / 'lr_choice.yaml'}" in final
    assert not any(a.startswith("data.root") for a in final)  # no local copy: torchvision's download


def test_dry_run_prints_and_runs_nothing_and_an_unknown_part_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(reproduce.subprocess, "run", lambda *a, **k: pytest.fail("a dry run ran a command"))
    assert reproduce.run(["gn_groups"], tmp_path, None, dry_run=True, figures=tmp_path / "fig") == {}
    assert "python train.py -m experiment=gn_groups" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="no part named gn_vs_gn.*Fix: --only one of gn_vs_bn"):
        reproduce.run(["gn_vs_gn"], tmp_path, None, dry_run=True, figures=tmp_path)


def test_a_run_copies_each_sweeps_figures_under_its_name(tmp_path, monkeypatch):
    ran = []

    def fake(cmd, check):
        ran.append(cmd[1])
        if cmd[1] == "scripts/report.py":  # what the report writes into the sweep
            Path(cmd[2]).mkdir(parents=True, exist_ok=True)
            (Path(cmd[2]) / "error_vs_batch.png").write_bytes(b"png")
            (Path(cmd[2]) / "results.csv").write_text("arm\n")

    monkeypatch.setattr(reproduce.subprocess, "run", fake)
    times = reproduce.run(["gn_vs_bn"], tmp_path / "out", None, dry_run=False, figures=tmp_path / "fig")
    assert ran == ["train.py", "scripts/report.py"] * 2 and set(times) == {"gn_vs_bn"}
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "gn_vs_bn_error_vs_batch.png",
        "gn_vs_bn_lr_error_vs_batch.png",
        "gn_vs_bn_lr_results.csv",
        "gn_vs_bn_results.csv",
    ]


def test_the_lr_grid_of_norms_vision_is_widened_past_its_edge_winners(tmp_path):
    sweep = tmp_path / "norms_vision_lr"
    sweep.mkdir()
    (sweep / "lr_choice.csv").write_text(
        "arm,batch,grid,lr,val/err,edge,where\n"
        "batch,32,0.05 0.1,0.1,30.0,True,highest\n"
        "group+ws,32,0.05 0.1 0.2,0.1,31.0,False,inside\n"
    )
    (cmd,) = reproduce.past_edge_commands(sweep, ("experiment=norms_vision_lr",), [])
    assert cmd[:4] == ["python", "train.py", "-m", "experiment=norms_vision_lr"]
    assert {"norm=batch", "model.ws=false", "data.batch=32", "task.optim.lr=0.2"} <= set(cmd)
    assert cmd[-1].startswith(f"hydra.sweep.dir={sweep}")  # inside the grid's sweep: its report reads it
    assert reproduce.PARTS["norms_vision"].extend_edges and not reproduce.PARTS["gn_vs_bn"].extend_edges
