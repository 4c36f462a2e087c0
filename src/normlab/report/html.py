"""``index.html``: one self-contained page per sweep (plotly's JS inline, no network), beside results.md.

It holds the sweep's command and commits, the results table (sortable; mean ± 95% interval as in results.md),
the panels of the experiment's dashboard definition (dashboard/definitions.py, the same list the W&B workspace
shows), the runs that did not complete, the images the runs wrote (style grids) and the text the language
models sampled (``samples.txt``). plotly is optional (``.[html]``).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd
from plotly.io import to_html

from normlab.dashboard.definitions import CLASSIFY_BN, DASHBOARDS, LM, STYLE, Dashboard
from normlab.dashboard.panels import TITLES, specs
from normlab.report.collect import Runs
from normlab.report.figures import figure
from normlab.report.provenance import command, commits
from normlab.report.table import cell

PANELS = {"classify": CLASSIFY_BN, "lm": LM, "style": STYLE}
MAX_IMAGES = 24  # PNGs embedded from the run directories; a page of hundreds would not open
MAX_SAMPLES = 24  # runs whose samples.txt is shown, for the same reason
SORT_JS = """
document.querySelectorAll("table.sortable th").forEach((th, i) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], up = th.dataset.dir !== "asc";
  const key = td => { const v = td.dataset.v ?? td.textContent; const n = parseFloat(v); return isNaN(n) ? v : n; };
  [...body.rows].sort((a, b) => { const x = key(a.cells[i]), y = key(b.cells[i]);
    return (x > y ? 1 : x < y ? -1 : 0) * (up ? 1 : -1); }).forEach(r => body.appendChild(r));
  th.dataset.dir = up ? "asc" : "desc";
}));
"""
CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1250px;padding:0 1em;color:#222}
code,pre{background:#f4f4f4;padding:2px 4px;border-radius:3px;white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;font-size:14px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee;cursor:pointer}td:first-child,th:first-child{text-align:left}
.grid{display:grid;grid-template-columns:minmax(0,1fr);gap:8px}
img{max-width:100%}footer{margin-top:2em;color:#666;font-size:13px}"""


def definition(experiment: str, task: str, runs: list[dict]) -> Dashboard:
    """The experiment's dashboard definition; for a sweep of no known experiment, its task's panels by norm."""
    if experiment in DASHBOARDS:
        return DASHBOARDS[experiment]
    swept = len({r.get("batch") for r in runs}) > 1
    return Dashboard(experiment, "", task, ("norm_name",), PANELS.get(task, CLASSIFY_BN), batch_swept=swept)


def table_html(table: pd.DataFrame, metrics: list[str]) -> str:
    if table.empty:
        return "<p><em>no completed runs</em></p>"
    keys = [c for c in table.columns if " " not in c and c != "seeds"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in [*keys, *metrics, "seeds"])
    rows = []
    for _, row in table.iterrows():
        cells = [f"<td>{html.escape(str(row[k]))}</td>" for k in keys]
        cells += [f'<td data-v="{row.get(f"{m} mean")}">{html.escape(cell(row, m))}</td>' for m in metrics]
        rows.append("<tr>" + "".join(cells) + f"<td>{row['seeds']}</td></tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def failures_html(runs: Runs) -> str:
    items = [
        f"<li><code>{html.escape(str(r.get('run_dir')))}</code> ({html.escape(str(r.get('norm')))}, batch "
        f"{r.get('batch')}, seed {r.get('seed')}): <b>{html.escape(str(r.get('status')))}</b>: "
        f"{html.escape(str(r.get('error') or 'no error recorded'))}</li>"
        for r in runs.not_completed
    ]
    items += [
        f"<li><code>{html.escape(p)}</code>: <b>unreadable</b>: {html.escape(why)}</li>" for p, why in runs.unreadable
    ]
    return f"<h2>Runs that did not complete</h2><ul>{''.join(items)}</ul>" if items else ""


def images_html(runs: list[dict]) -> str:
    """The PNGs the runs wrote into their directories (style grids), inline as base64."""
    found = [
        p
        for r in runs
        if Path(str(r.get("run_dir"))).is_dir()
        for p in sorted(Path(r["run_dir"]).rglob("*.png"))
        if "wandb" not in p.parts
    ][:MAX_IMAGES]
    tags = [
        f'<figure><img alt="{html.escape(p.name)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(str(p.parent.name))}/'
        f"{html.escape(p.name)}</figcaption></figure>"
        for p in found
    ]
    return f'<h2>Images from the runs</h2><div class="grid">{"".join(tags)}</div>' if tags else ""


def samples_html(runs: list[dict]) -> str:
    """The text each language model sampled at the end of training (tasks/samples.py), one folded block per run."""
    found = [(r, Path(str(r.get("run_dir"))) / "samples.txt") for r in runs]
    found = [(r, p) for r, p in found if p.is_file()][:MAX_SAMPLES]
    blocks = [
        f"<details><summary>{html.escape(str(r.get('norm')))}, batch {r.get('batch')}, seed {r.get('seed')} "
        f"(<code>{html.escape(p.parent.name)}</code>)</summary><pre>{html.escape(p.read_text())}</pre></details>"
        for r, p in found
    ]
    return f"<h2>Text sampled from the models</h2>{''.join(blocks)}" if blocks else ""


def page(source: Path, title: str, task: str, runs: Runs, table: pd.DataFrame, metrics: list[str]) -> str:
    done = runs.completed
    d = definition(title, task, done)
    sections, first = [], True
    for kind in d.panels:
        divs = []
        for p in specs(d, kind):
            fig = figure(d, done, p)
            if fig is None:
                divs.append(f"<p>{html.escape(p.title)}: see the images below.</p>")
                continue
            divs.append(
                to_html(
                    fig,
                    full_html=False,
                    include_plotlyjs=first,
                    default_width="100%",
                    config={"responsive": True},
                    div_id=f"panel-{kind}-{len(divs)}",
                )
            )
            first = False
        sections.append(f'<h2>{html.escape(TITLES[kind])}</h2><div class="grid">{"".join(divs)}</div>')
    cmd, shas = command(source), commits(done)
    failed = len(runs.not_completed) + len(runs.unreadable)
    head = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(d.question)}</p>" if d.question else "",
        f"<p>Sweep <code>{html.escape(Path(source).name)}</code>: {len(done)} completed runs, {failed} not "
        "completed.</p>",
        f"<p>Command: <code>{html.escape(cmd)}</code></p>" if cmd else "",
        f"<p>Commit: {', '.join(f'<code>{s}</code>' for s in shas)}</p>" if shas else "",
    ]
    body = [
        *head,
        "<h2>Results</h2><p>Mean ± the half-width of its 95% t-interval over seeds; click a column header to sort.</p>",
        table_html(table, metrics),
        *sections,
        failures_html(runs),
        images_html(done),
        samples_html(done),
        "<footer>On a remote machine: <code>python -m http.server -d &lt;this directory&gt; 8000</code> and "
        "open port 8000, or <code>python scripts/report.py &lt;dir&gt; --serve</code>.</footer>",
    ]
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>{''.join(body)}<script>{SORT_JS}</script></body></html>"
    )
