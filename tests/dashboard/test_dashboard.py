"""W&B workspaces and reports built by code, checked offline: the serialized models wandb-workspaces would
send (filters, grouping, panel metrics, axes), every experiment's definition, and a script that never
reaches the network without --save and a login."""

from __future__ import annotations

import json
import runpy
import socket
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("wandb_workspaces")

from normlab import dashboard as dash  # noqa: E402
from normlab.dashboard import findings as findings_mod  # noqa: E402
from normlab.dashboard import panels as dash_panels  # noqa: E402
from normlab.dashboard.panels import KINDS  # noqa: E402
from normlab.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "experiment"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Building and serializing must not open a connection: any attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a dashboard test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def spec(experiment: str) -> dict:
    return dash.to_spec(*dash.build(experiment, "ent", "proj"))


def panels(s: dict) -> dict[str, list[dict]]:
    """Workspace panels by section name."""
    sections = s["workspace"]["spec"]["section"]["panelBankConfig"]["sections"]
    return {sec["name"]: sec["panels"] for sec in sections}


def metrics(panel: dict) -> list[str]:
    c = panel["config"]
    return c.get("metrics") or [c[k] for k in ("yAxis",) if k in c] or [col["accessor"] for col in c.get("columns", [])]


def runset(s: dict) -> dict:
    return s["workspace"]["spec"]["section"]["runSets"][0]


def experiment_yaml(stem: str) -> tuple[dict, str, dict]:
    """An experiment file, its task override and its sweep params, both inherited from the experiment it extends."""
    cfg = yaml.safe_load((CONF / f"{stem}.yaml").read_text())
    parent = next((o for o in cfg.get("defaults", []) if isinstance(o, str) and o != "_self_"), None)
    task, params = experiment_yaml(parent)[1:] if parent else ("classify", {})
    overrides = [o for o in cfg.get("defaults", []) if isinstance(o, dict)]
    task = next((v for o in overrides for k, v in o.items() if k == "override /task"), task)
    return cfg, task, params | ((cfg.get("hydra") or {}).get("sweeper", {}).get("params") or {})


def test_every_experiment_in_the_folder_has_a_definition_that_matches_its_yaml():
    stems = {p.stem for p in CONF.glob("*.yaml")}
    assert stems == set(dash.DASHBOARDS), "conf/experiment/ and normlab/dashboard/definitions.py disagree"
    for stem in stems:
        (cfg, task, params), d = experiment_yaml(stem), dash.DASHBOARDS[stem]
        assert cfg["name"] == d.experiment == stem
        assert d.task == task, stem
        assert d.batch_swept == ("data.batch" in params), f"{stem}: batch_swept vs its sweep of data.batch"
        assert d.panels and set(d.panels) <= set(KINDS), stem
        assert d.question.endswith("?")


def test_gn_vs_bn_workspace_filters_groups_and_plots_against_the_batch_on_a_log_axis():
    s = spec("gn_vs_bn")
    rs = runset(s)
    leaves = [(f["key"]["section"], f["key"]["name"], f["op"], f["value"]) for f in rs["filters"]["filters"]]
    assert leaves == [("run", "group", "=", "gn_vs_bn"), ("config", "experiment", "=", "gn_vs_bn")]
    assert rs["filters"]["filters"][1]["connector"] == "AND"
    assert rs["grouping"] == [
        {"section": "config", "name": "norm_name.value"},
        {"section": "config", "name": "batch_per_device.value"},
    ]
    assert s["workspace"]["spec"]["section"]["settings"]["maxRuns"] >= 30  # every group of the sweep, not 10
    sections = s["workspace"]["spec"]["section"]["panelBankConfig"]["sections"]
    # The panels aggregate the runs table's groups (their own groupby is unset): W&B must be told to use them.
    assert all(sec["localPanelSettings"]["useRunsTableGroupingInPanels"] is True for sec in sections)
    assert all("groupBy" not in p["config"] for sec in sections for p in sec["panels"])
    by = panels(s)
    assert list(by) == [
        "Headline",
        "Validation curves",
        "Training loss",
        "Throughput",
        "Parallel coordinates",
        "Batch statistics: PreciseBN and train-mode gaps",
    ]
    scatter, bar = by["Headline"]
    assert scatter["viewType"] == "Scatter Plot"
    assert scatter["config"]["xAxis"] == "config:batch_per_device.value"
    assert scatter["config"]["yAxis"] == "summary:test/err"
    assert scatter["config"]["xAxisLogScale"] is True
    assert bar["config"]["metrics"] == ["summary_metrics.test/err"]
    for panel in [bar, *by["Validation curves"], *by["Training loss"], *by["Throughput"]]:
        assert (panel["config"]["groupAgg"], panel["config"]["groupArea"], panel["config"]["aggregate"]) == (
            "mean",
            "stddev",
            True,
        )
    (val,) = by["Validation curves"]
    assert (val["viewType"], val["config"]["xAxis"], val["config"]["metrics"]) == (
        "Run History Line Plot",
        "epoch",
        ["val/err"],
    )
    assert [metrics(p) for p in by["Training loss"]] == [["train/loss_step"], ["train/loss_epoch"]]
    assert by["Training loss"][0]["config"]["xAxis"] == "trainer/global_step"
    assert metrics(by["Throughput"][0]) == ["summary_metrics.train/samples_per_s"]
    stats = by["Batch statistics: PreciseBN and train-mode gaps"]
    assert metrics(stats[0]) == [
        "summary_metrics.test/err",
        "summary_metrics.test/err_precise_bn",
        "summary_metrics.test/err_batch_stats",
    ]
    assert [(p["config"]["yAxis"], p["config"]["xAxisLogScale"]) for p in stats[1:]] == [
        ("summary:test/err_precise_bn", True),
        ("summary:test/err_batch_stats", True),
    ]
    (par,) = by["Parallel coordinates"]
    assert par["config"]["columns"] == [
        {"accessor": "config:norm_name.value"},
        {"accessor": "config:batch_per_device.value", "log": True},
        {"accessor": "config:base_lr.value"},
        {"accessor": "summary:test/err"},
    ]


def test_an_experiment_at_one_batch_size_gets_no_batch_axis_and_groups_by_its_arm():
    by = panels(s := spec("gn_groups"))
    assert runset(s)["grouping"] == [{"section": "config", "name": "norm.value.num_groups"}]
    assert [p["viewType"] for p in by["Headline"]] == ["Bar Chart"]
    assert "Batch statistics: PreciseBN and train-mode gaps" not in by  # GroupNorm keeps no batch statistics
    assert not any(p["config"].get("xAxis") == "config:batch_per_device.value" for ps in by.values() for p in ps)


def test_lm_workspace_shows_loss_and_bpc_per_norm_and_norm_position():
    by = panels(s := spec("lm_norms"))
    assert runset(s)["grouping"] == [
        {"section": "config", "name": "norm_name.value"},
        {"section": "config", "name": "model.value.norm_position"},
    ]
    assert metrics(by["Headline"][0]) == ["summary_metrics.val/loss.last"]
    assert [metrics(p) for p in by["Loss per norm and norm position"]] == [["val/loss"], ["train/loss_step"]]
    assert [metrics(p) for p in by["Bits per char"]] == [["val/bpc"], ["summary_metrics.val/bpc.last"], ["train/bpc"]]
    assert metrics(by["Throughput"][0]) == ["summary_metrics.train/tokens_per_s"]
    assert "summary:val/loss.last" in metrics(by["Parallel coordinates"][0])


def test_style_workspace_shows_style_loss_and_the_held_out_image_grids():
    by = panels(spec("style_norms"))
    assert [metrics(p) for p in by["Style loss"]] == [
        ["val/style"],
        ["val/content"],
        ["summary_metrics.val/style_drop.last"],
    ]
    (images,) = by["Image grids per norm"]
    assert (images["viewType"], images["config"]["mediaKeys"]) == ("Media Browser", ["held_out/stylized"])
    assert by["Headline"][0]["config"]["xAxisLogScale"] is True  # batch 1 and 4


def test_report_has_question_panels_results_findings_and_the_reproducing_commands():
    s, d = spec("gn_vs_bn"), dash.DASHBOARDS["gn_vs_bn"]
    assert s["report"]["project"] == {"name": "proj", "entityName": "ent"}
    blocks = s["report"]["spec"]["blocks"]
    text = json.dumps(blocks)
    assert d.question.replace("'", "") in text.replace("'", "")
    grids = [b["metadata"] for b in blocks if b["type"] == "panel-grid"]
    runs, results = grids
    (rs,) = runs["runSets"]
    assert rs["grouping"] == runset(s)["grouping"] and rs["filters"] == runset(s)["filters"]
    workspace_panels = [(p["viewType"], metrics(p)) for ps in panels(s).values() for p in ps]
    assert [(p["viewType"], metrics(p)) for p in runs["panelBankSectionConfig"]["panels"]] == workspace_panels
    leaves = [(f["key"]["name"], f["value"]) for f in results["runSets"][0]["filters"]["filters"]]
    assert leaves == [("group", "gn_vs_bn"), ("jobType", "report")]  # the run scripts/report.py logs
    table, figures = results["panelBankSectionConfig"]["panels"]
    assert "results" in json.dumps(table["config"])
    assert figures["config"]["mediaKeys"] == ["error_vs_batch", "batch_stat_gap", "training_curves"]
    markdown = [b["content"] for b in blocks if b["type"] == "markdown-block"]
    found = findings_mod.findings(d.findings)
    assert len(found) >= 3 and all(f"- {f}" in markdown[0] for f in found)
    assert "python scripts/reproduce.py --only gn_vs_bn" in markdown[1] and "experiment=gn_vs_bn " in markdown[1]


def test_an_experiment_not_measured_yet_says_so_and_gets_its_sweep_command():
    blocks = spec("gn_vs_bn_full")["report"]["spec"]["blocks"]
    markdown = [b["content"] for b in blocks if b["type"] == "markdown-block"]
    assert markdown[0].startswith("Not measured yet")
    assert "python train.py -m experiment=gn_vs_bn_full" in markdown[1]


def test_findings_are_the_bullets_after_what_it_shows_in_the_named_section(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "r.md").write_text(
        "# R\n## Other (`x`)\n- not this\n## The thing (`x_y`)\nSetup:\n- a setup bullet\n"
        "```bash\n# a shell comment, not a heading\n```\nWhat it shows:\n\n"
        "- **One** finding,\n  over two lines.\n- Two.\n### Sub\n- Three, in a subsection.\n## Next\n- not this\n"
    )
    assert findings_mod.findings(("docs/r.md", "`x_y`"), tmp_path) == [
        "**One** finding, over two lines.",
        "Two.",
        "Three, in a subsection.",
    ]
    with pytest.raises(ConfigError, match="no bullet points under a heading with '`zz`'"):
        findings_mod.findings(("docs/r.md", "`zz`"), tmp_path)
    with pytest.raises(ConfigError, match="missing.md not found"):
        findings_mod.findings(("docs/missing.md", "`x`"), tmp_path)


def run_script(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["dashboard.py", *args])
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(ROOT / "scripts" / "dashboard.py"), run_name="__main__")
    out = capsys.readouterr()
    return ended.value.code, out.out, out.err


def test_script_without_save_prints_one_line_dumps_the_spec_and_never_saves(monkeypatch, capsys, tmp_path):
    def never(*args):
        raise AssertionError("save called")

    monkeypatch.setattr(dash, "save", never)
    target = tmp_path / "spec.json"
    code, out, _ = run_script(
        monkeypatch, capsys, "--entity", "e", "--project", "p", "--experiment", "gn_vs_bn", "--dump", str(target)
    )
    assert code == 0 and out.count("\n") == 1
    assert out.startswith("would create in e/p: workspace 'normlab: gn_vs_bn' (6 sections, 11 panels;")
    dumped = json.loads(target.read_text())
    assert set(dumped) == {"experiment", "definition", "workspace", "report"}
    assert dumped["definition"]["group_by"] == ["norm_name", "batch_per_device"]
    assert dumped["workspace"]["displayName"] == "normlab: gn_vs_bn"


def test_script_with_save_but_no_login_touches_no_network(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(dash, "save", lambda *a: (_ for _ in ()).throw(AssertionError("save called")))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no such file: no login
    code, out, _ = run_script(
        monkeypatch, capsys, "--entity", "e", "--project", "p", "--experiment", "lm_norms", "--save"
    )
    assert code == 0 and out.count("\n") == 1 and out.rstrip().endswith("not saved (no W&B login for api.wandb.ai)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    code, out, _ = run_script(
        monkeypatch, capsys, "--entity", "e", "--project", "p", "--experiment", "lm_norms", "--save"
    )
    assert "not saved (WANDB_MODE=offline)" in out


def test_script_with_save_and_a_login_calls_save_once(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(dash, "save", lambda w, r: calls.append((w.name, r.title)) or ("W", "R"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / "netrc").chmod(0o600)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    code, out, _ = run_script(
        monkeypatch, capsys, "--entity", "e", "--project", "p", "--experiment", "style_norms", "--save"
    )
    assert code == 0 and calls == [("normlab: style_norms", "normlab: style_norms")]
    assert out == "saved workspace W and report R\n"


def test_script_refuses_an_unknown_experiment_in_one_line(monkeypatch, capsys):
    code, out, err = run_script(monkeypatch, capsys, "--entity", "e", "--project", "p", "--experiment", "gn_vs_b")
    assert code == 2 and err.count("\n") == 1 and "Did you mean 'gn_vs_bn'?" in err and "Fix:" in err


def test_without_wandb_workspaces_one_actionable_line(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("wandb_workspaces")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"Fix: pip install -e '\.\[dashboard\]'"):
        dash.build("gn_vs_bn", "e", "p")


def test_docs_table_lists_every_definition_as_it_is():
    doc = (ROOT / "docs" / "dashboards.md").read_text()
    assert "## W&B workspace and report" in doc
    for d in dash.DASHBOARDS.values():
        keys = ", ".join(f"`{k}`" for k in d.group_by)
        row = f"| `{d.experiment}` | {d.task} | {keys} | `{dash_panels.headline(d)}` | {', '.join(d.panels)} |"
        assert row in doc, f"docs/dashboards.md: no row {row}"


def test_the_dumped_workspace_is_drawn_one_box_per_panel(monkeypatch, capsys, tmp_path):
    spec = tmp_path / "spec.json"
    run_script(monkeypatch, capsys, "--entity", "e", "--project", "p", "--experiment", "gn_vs_bn", "--dump", str(spec))
    script = runpy.run_path(str(ROOT / "scripts" / "draw_workspace.py"))
    dumped = json.loads(spec.read_text())
    texts = script["draw"](dumped, tmp_path / "ws.png")
    panels = [p for s in dumped["workspace"]["spec"]["section"]["panelBankConfig"]["sections"] for p in s["panels"]]
    assert len(texts) == len(panels) == 11
    assert all(t.startswith(p["viewType"]) for t, p in zip(texts, panels, strict=True))
    assert (tmp_path / "ws.png").stat().st_size > 1000
    (tmp_path / "bad.json").write_text("{}")
    assert script["main"]([str(tmp_path / "bad.json")]) == 2
    assert "is not a spec of scripts/dashboard.py --dump" in capsys.readouterr().err
