"""The report on synthetic sweeps: tables, failures, missing metrics, figures."""

from __future__ import annotations

import json

import pytest

from normlab.report import report
from normlab.report.plots import curve_table

ARMS = {("batch", False): 0.0, ("group", True): 1.0}


def fake_run(root, i, norm, ws, batch, seed, status="completed", metrics=None):
    d = root / str(i)
    (d / "csv").mkdir(parents=True)
    err = 20 + 10 / batch * (norm == "batch") + seed  # BatchNorm worse at small batch, as in the paper
    metrics = (
        metrics
        if metrics is not None
        else {"test/err": err, "val/err": err + 1, "test/err_batch_stats": err + 2, "test/err_precise_bn": err - 0.5}
    )
    summary = {
        "status": status,
        "task": "classify",
        "model": "resnet8",
        "norm": norm,
        "batch": batch,
        "seed": seed,
        "experiment": "synthetic",
        "metrics": metrics if status == "completed" else {},
        "config": {
            "model": {"name": "resnet8", "ws": ws},
            "norm": {"name": norm},
            "data": {"batch": batch},
            "logger": {"wandb": {"project": "normlab", "mode": "offline"}},
        },
        "wall_time_s": 1.0,
    }
    if status == "failed":
        summary["error"] = "RuntimeError: boom"
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "csv" / "metrics.csv").write_text("epoch,step,val/err\n0,10,50\n1,20,30\n")
    return d


@pytest.fixture
def sweep(tmp_path):
    i = 0
    for norm, ws in ARMS:
        for batch in (2, 8, 32):
            for seed in (0, 1):
                fake_run(tmp_path, i, norm, ws, batch, seed)
                i += 1
    fake_run(tmp_path, i, "batch", False, 4, 0, status="failed")
    fake_run(tmp_path, i + 1, "group", True, 32, 2, metrics={"val/err": 30.0})  # no test/err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text('{"status": "compl')  # truncated write
    return tmp_path


def test_table_has_mean_and_std_over_seeds(sweep):
    result = report(sweep)
    row = result.table[(result.table.arm == "batch") & (result.table.batch == 2)].iloc[0]
    assert row["test/err mean"] == pytest.approx(25.5) and row["test/err std"] == pytest.approx(0.7071, abs=1e-3)
    assert row["seeds"] == 2
    assert set(result.table.arm) == {"batch", "group+ws"}


def test_failed_and_unreadable_runs_are_listed_not_dropped(sweep):
    result = report(sweep)
    assert result.failed == 2
    assert "**failed**: RuntimeError: boom" in result.markdown and "**unreadable**" in result.markdown


def test_a_missing_metric_is_not_a_zero(sweep):
    result = report(sweep)
    row = result.table[(result.table.arm == "group+ws") & (result.table.batch == 32)].iloc[0]
    assert row["seeds"] == 3 and row["test/err mean"] == pytest.approx(20.5)  # mean of the two that have it


def test_files_and_figures_are_written(sweep):
    result = report(sweep)
    names = {p.name for p in result.files}
    assert {"results.csv", "results.md", "error_vs_batch.png", "batch_stat_gap.png", "training_curves.png"} <= names
    assert all((sweep / n).stat().st_size > 1000 for n in names if n.endswith(".png"))
    assert "| arm | batch | test/err" in (sweep / "results.md").read_text()


def test_cli_exit_status_counts_failures(sweep, capsys):
    import runpy
    import sys

    sys.argv = ["report.py", str(sweep), "--no-wandb"]
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path("scripts/report.py", run_name="__main__")
    assert exit_info.value.code == 1
    assert "results.md" in capsys.readouterr().out


def test_report_is_logged_to_an_offline_wandb_run(sweep):
    report(sweep, log_wandb=True)
    assert list((sweep / "wandb").glob("offline-run-*")), "an offline W&B run with the table and figures"


def test_a_swept_knob_gets_a_line_of_its_own_in_the_curves(tmp_path):
    runs = []
    for i, groups in enumerate((1, 8, 1, 8)):
        d = fake_run(tmp_path, i, "group", True, 32, seed=i // 2)
        summary = json.loads((d / "summary.json").read_text())
        summary["config"]["norm"]["num_groups"] = groups
        runs.append({**summary, "run_dir": str(d)})
    data = curve_table(runs, "val/err")
    assert set(data["arm"]) == {"group+ws num_groups=1", "group+ws num_groups=8"}
    assert len(data) == 4 * 2  # two epochs of each of the four runs


def test_wandb_summaries_of_best_and_final_value_read_as_numbers():
    from normlab.report.collect import summary_metrics

    got = summary_metrics({"val/loss": {"min": 1.5, "last": 1.75}, "test/err": 30.0, "samples": {"_type": "table"}})
    assert got == {"val/loss": 1.75, "val/loss.min": 1.5, "test/err": 30.0}
