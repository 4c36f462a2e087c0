"""index.html of a synthetic sweep: the table with intervals, one plot per dashboard panel, no network,
failures listed; without plotly, one line; and, where Chromium is installed, the page rendered by it."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys

import pytest

from normlab.dashboard.definitions import DASHBOARDS
from normlab.dashboard.panels import specs
from normlab.report import report
from tests.report.test_report import sweep  # noqa: F401  (the fixture)

pytest.importorskip("plotly")


def as_experiment(root, name="gn_vs_bn"):
    for path in root.rglob("summary.json"):
        try:
            s = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        path.write_text(json.dumps({**s, "experiment": name}))


def plotted(d) -> int:
    return sum(p.plot != "media" for kind in d.panels for p in specs(d, kind))


def test_page_holds_table_panels_and_failures(sweep):  # noqa: F811
    as_experiment(sweep)
    result = report(sweep)
    page = (sweep / "index.html").read_text()
    assert sweep / "index.html" in result.files
    row = result.table[(result.table.arm == "batch") & (result.table.batch == 2)].iloc[0]
    assert f"{row['test/err mean']:.2f} ± {row['test/err ci95']:.2f}" in page
    assert len(re.findall(r'id="panel-', page)) == plotted(DASHBOARDS["gn_vs_bn"]) == 11
    assert not re.search(r"<script[^>]+src=[\"']?https?:", page), "no script from the network"
    assert "RuntimeError: boom" in page and "unreadable" in page
    assert html.escape(DASHBOARDS["gn_vs_bn"].question) in page


def test_without_plotly_the_page_is_skipped_with_one_line(sweep, monkeypatch, capsys):  # noqa: F811
    import normlab.report

    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.delattr(normlab.report, "html", raising=False)
    monkeypatch.delitem(sys.modules, "normlab.report.html", raising=False)
    monkeypatch.delitem(sys.modules, "normlab.report.figures", raising=False)
    result = report(sweep)
    assert not (sweep / "index.html").exists() and (sweep / "results.md").exists()
    assert "pip install -e '.[html]'" in capsys.readouterr().out
    assert all(f.name != "index.html" for f in result.files)


def test_serve_flag_parses():
    import runpy

    parser = runpy.run_path("scripts/report.py")["build_parser"]()
    assert parser.parse_args(["some_dir", "--serve"]).serve


WEBGL = re.compile(r"WebGL|GL Driver Message|swiftshader", re.I)


def browser() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def render(page, out_png, timeout=30):
    """Chromium headless: a screenshot, and the DOM after the page's scripts ran; stderr has console lines."""
    exe = browser()
    if exe is None:
        pytest.skip("no Chromium on this machine: apt-get install chromium")
    base = [
        exe,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1400,2400",
        "--virtual-time-budget=5000",
    ]
    shot = subprocess.run(
        [*base, f"--screenshot={out_png}", page.as_uri()], capture_output=True, text=True, timeout=timeout
    )
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=timeout)
    return dom.stdout, shot.stderr + dom.stderr


def test_chromium_renders_every_panel_without_console_errors(sweep, tmp_path):  # noqa: F811
    as_experiment(sweep)
    report(sweep)
    dom, log = render(sweep / "index.html", tmp_path / "index.png")
    assert (tmp_path / "index.png").stat().st_size > 10_000
    # one main-svg per cartesian plot; plotly draws parcoords in a main-svg too
    plots = re.findall(r'<div[^>]*id="panel-[^"]*"[^>]*class="[^"]*js-plotly-plot', dom)
    assert len(plots) == plotted(DASHBOARDS["gn_vs_bn"])
    assert dom.count('class="main-svg"') >= len(plots)
    assert "<table" in dom and "group+ws" in dom
    # Chromium logs every console message at INFO, whatever its level: any but its own software-WebGL
    # notices (plotly's parcoords draws with WebGL) fails, and every uncaught exception.
    errors = [line for line in log.splitlines() if "Uncaught" in line or ("CONSOLE" in line and not WEBGL.search(line))]
    assert not errors, errors


def test_pngs_of_the_runs_are_embedded(sweep):  # noqa: F811
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    fig.savefig(sweep / "0" / "style_grid.png")
    plt.close(fig)
    report(sweep)
    page = (sweep / "index.html").read_text()
    assert 'alt="style_grid.png" src="data:image/png;base64,' in page


def test_lm_samples_of_the_runs_are_shown(sweep):  # noqa: F811
    text = "--- sample 0 (seed 0, temperature 0.8) ---\nROMEO: <what> & more"
    (sweep / "0" / "samples.txt").write_text(text)
    report(sweep)
    page = (sweep / "index.html").read_text()
    assert "Text sampled from the models" in page
    assert html.escape(text) in page and "<what>" not in page
