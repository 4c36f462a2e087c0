"""End to end: a real gn_vs_bn-shaped multirun (BN and GN + WS at two batch sizes, two seeds, one batch
per epoch, W&B offline), then the dashboards built for it. The offline W&B runs carry the best and last
val/err and the flat grouping keys; every metric and key the workspace and report plot or group by is
one these runs log; and the report's index.html renders every panel in a headless browser."""

from __future__ import annotations

import re

import pytest
import torch

from tests.report.test_html import WEBGL, plotted, render
from tests.run.cli_run import run_cli
from tests.run.wandb_records import offline_run

pytest.importorskip("plotly")
pytest.importorskip("wandb_workspaces")

from normlab.dashboard.definitions import DASHBOARDS  # noqa: E402
from normlab.report import report  # noqa: E402
from tests.dashboard.test_dashboard import metrics, spec  # noqa: E402

ARMS = {"variant": ("bn", "gn_ws"), "data.batch": (2, 4), "seed": (0, 1)}
FLAT = ("norm_name", "batch_per_device", "global_batch", "model_name", "seed", "experiment", "lr", "base_lr")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from torchvision.io import write_jpeg

    root = tmp_path_factory.mktemp("e2e")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("test", 2)):  # 10 classes, as the ResNet's head expects
        for c in range(10):
            (root / "tree" / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                img = torch.randint(0, 255, (3, 16, 16), generator=g, dtype=torch.uint8)
                write_jpeg(img, str(root / "tree" / split / f"c{c}" / f"{i}.jpg"))
    res = run_cli(
        "-m", "experiment=gn_vs_bn", *(f"{k}={','.join(map(str, v))}" for k, v in ARMS.items()),
        "data=image_folder", f"data.root={root / 'tree'}", "data.subset=null", "data.val_size=10",
        "data.eval_batch=20", "debug=fast_dev_run", "trainer.max_epochs=2", "threads=1",
        "callbacks.batch_stats.precise_batches=2", f"paths.cache_dir={root / 'cache'}",
        f"hydra.sweep.dir={root / 'sweep'}",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "sweep"


def runs(sweep):
    return [offline_run(d) for d in sorted(sweep.iterdir()) if d.is_dir() and any(d.glob("wandb/offline-run-*"))]


def test_offline_runs_hold_best_and_last_val_err_and_the_grouping_keys(sweep):
    rs = runs(sweep)
    assert len(rs) == 8 and len({r["name"] for r in rs}) == 8
    assert {r["group"] for r in rs} == {"gn_vs_bn"}
    for r in rs:
        curve = [h["val/err"] for h in r["history"] if "val/err" in h]
        assert len(curve) == 2  # one value per epoch
        assert r["summary"]["val/err"] == {"min": min(curve), "last": curve[-1]}
        assert set(FLAT) <= set(r["config"]) and isinstance(r["config"]["norm"], dict)  # flat next to nested
    arms = {(r["config"]["norm_name"], r["config"]["batch_per_device"], r["config"]["seed"]) for r in rs}
    assert arms == {(n, b, s) for n in ("batch", "group") for b in ARMS["data.batch"] for s in ARMS["seed"]}


def serialized_panels(node) -> list[dict]:
    """Every serialized panel anywhere in ``node`` (the workspace's sections, the report's panel grids)."""
    if isinstance(node, dict):
        return ([node] if "viewType" in node and isinstance(node.get("config"), dict) else []) + [
            p for v in node.values() for p in serialized_panels(v)
        ]
    return [p for v in node for p in serialized_panels(v)] if isinstance(node, list) else []


def plotted_names(node) -> list[str]:
    """Every metric or config key a serialized panel in ``node`` reads: its metrics and its x axis."""
    panels = serialized_panels(node)
    return [*(m for p in panels for m in metrics(p)), *(p["config"]["xAxis"] for p in panels if "xAxis" in p["config"])]


def test_every_key_the_workspace_and_report_read_is_one_the_runs_log(sweep):
    rs, s = runs(sweep), spec("gn_vs_bn")
    runset = s["workspace"]["spec"]["section"]["runSets"][0]
    group_by = [g["name"].removesuffix(".value") for g in runset["grouping"]]
    assert group_by == ["norm_name", "batch_per_device"]
    # The runs table's groups are the arms: each holds the two seeds of one norm at one batch size.
    groups = {}
    for r in rs:
        groups.setdefault(tuple(r["config"][k] for k in group_by), []).append(r["config"]["seed"])
    assert len(groups) == 4 and all(sorted(seeds) == [0, 1] for seeds in groups.values())
    assert all(r["config"]["experiment"] == "gn_vs_bn" for r in rs)  # the runset's config filter keeps them
    logged = set().union(*(r["summary"] for r in rs), *(h for r in rs for h in r["history"]))
    names = plotted_names(s["workspace"]) + plotted_names(s["report"])
    assert len(names) > 10
    for name in names:
        if m := re.fullmatch(r"config:(.+)\.value", name):
            assert all(m[1] in r["config"] for r in rs), name
        else:
            metric = re.sub(r"^(summary:|summary_metrics\.)", "", name)
            assert metric in logged, f"a panel reads {name}, which no run logs"


def test_index_html_of_the_sweep_renders_every_panel(sweep, tmp_path):
    result = report(sweep)
    assert result.failed == 0 and set(result.table.arm) == {"batch", "group+ws"}
    dom, log = render(sweep / "index.html", tmp_path / "index.png")
    assert (tmp_path / "index.png").stat().st_size > 10_000  # the screenshot, kept with pytest's tmp_path
    panels = re.findall(r'<div[^>]*id="panel-[^"]*"[^>]*class="[^"]*js-plotly-plot', dom)
    assert len(panels) == plotted(DASHBOARDS["gn_vs_bn"]) and dom.count('class="main-svg"') >= len(panels)
    assert "<table" in dom and "group+ws" in dom
    errors = [line for line in log.splitlines() if "Uncaught" in line or ("CONSOLE" in line and not WEBGL.search(line))]
    assert not errors, errors
