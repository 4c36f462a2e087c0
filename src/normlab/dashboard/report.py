"""The W&B report of one experiment: its question, the workspace's panels, the results table and figures
of scripts/report.py, the findings of docs/results*.md and the commands that reproduce them."""

from __future__ import annotations

import shlex
from pathlib import Path

from normlab.dashboard.definitions import Dashboard
from normlab.dashboard.findings import ROOT, findings
from normlab.dashboard.lib import workspaces
from normlab.dashboard.panels import FIGURES, kind_panels
from normlab.dashboard.workspace import run_filters
from normlab.report.reproduce import PARTS, commands

REPORT_FILES = ("results.md", "results.csv", "differences.csv")  # beside the PNGs, in the sweep directory


def reproduce(d: Dashboard) -> list[str]:
    """The commands behind the experiment's numbers: scripts/reproduce.py's part that runs it, else its sweep
    and report by hand."""
    for part in PARTS.values():
        if any(step[0] == f"experiment={d.experiment}" for step in part.steps):
            return [
                f"python scripts/reproduce.py --only {part.name}",
                "# which runs:",
                *(shlex.join(c) for c in commands(part, Path("logs/reproduce"), None)),
            ]
    return [f"python train.py -m experiment={d.experiment}", "python scripts/report.py logs/multiruns/<timestamp>"]


def _runset(wr, d: Dashboard, entity: str, project: str, name: str, filters: list):
    return wr.Runset(
        entity=entity, project=project, name=name, filters=filters, groupby=[f"config.{k}" for k in d.group_by]
    )


def build_report(d: Dashboard, entity: str, project: str, docs_root: Path = ROOT):
    lib = workspaces()
    wr, expr = lib.wr, lib.expr
    runs = _runset(wr, d, entity, project, f"{d.experiment} runs", run_filters(expr, d))
    # scripts/report.py logs its table ("results") and PNGs (by file stem) to a run of job type "report"
    # in the experiment's group, named report-<experiment>.
    report_run = wr.Runset(
        entity=entity,
        project=project,
        name=f"report-{d.experiment}",
        filters=[expr.Metric("Group") == d.experiment, expr.Metric("JobType") == "report"],
    )
    found = findings(d.findings, docs_root)
    source = f"{d.findings[0]}, section '{d.findings[1]}'" if d.findings else None
    blocks = [
        wr.H1("Question"),
        wr.P(d.question),
        wr.H1("Panels"),
        wr.P(
            f"Runs of W&B group {d.experiment}, grouped by {', '.join(d.group_by)}: each line and bar is the "
            "mean over seeds, its band or whisker the standard deviation."
        ),
        wr.PanelGrid(runsets=[runs], panels=[p for kind in d.panels for p in kind_panels(d, kind)]),
        wr.H1("Results table and figures"),
        wr.P(
            "From scripts/report.py on the sweep (logged with the W&B report run; the same files are written "
            f"into the sweep directory: {', '.join(REPORT_FILES)} and {', '.join(f + '.png' for f in FIGURES)}, "
            f"copied to docs/figures as {d.experiment}_<file> by scripts/reproduce.py)."
        ),
        wr.PanelGrid(
            runsets=[report_run],
            panels=[
                wr.WeavePanelSummaryTable(table_name="results"),
                wr.MediaBrowser(title="figures", media_keys=list(FIGURES)),
            ],
        ),
        wr.H1("Findings"),
        wr.MarkdownBlock(
            "\n".join(f"- {f}" for f in found) + f"\n\nFrom {source}."
            if found
            else "Not measured yet: no findings in docs/results*.md for this experiment."
        ),
        wr.H1("Reproduce"),
        wr.MarkdownBlock("```bash\n" + "\n".join(reproduce(d)) + "\n```"),
    ]
    return wr.Report(
        entity=entity, project=project, title=f"normlab: {d.experiment}", description=d.question, blocks=blocks
    )
