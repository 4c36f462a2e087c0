"""Turn a sweep into tables and figures: ``report(sweep_dir)``, or ``python scripts/report.py``.

Reads every ``summary.json`` below a directory (or a W&B group), writes ``results.csv``,
``results.md`` and PNG figures into it, and logs them to W&B.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from normlab.report import plots
from normlab.report.collect import Runs, collect_runs, collect_wandb
from normlab.report.table import (
    HEADLINE,
    differences,
    differences_markdown,
    markdown,
    runs_frame,
    searched_lr,
    summarize,
)
from normlab.tasks import lr_choice


@dataclass
class Report:
    table: pd.DataFrame
    markdown: str
    files: list[Path] = field(default_factory=list)
    failed: int = 0


def _failures(runs: Runs) -> str:
    lines = []
    for r in runs.not_completed:
        why = r.get("error") or ("killed or still running" if r.get("status") == "running" else "no error recorded")
        lines.append(
            f"- `{r.get('run_dir')}` ({r.get('norm')}, batch {r.get('batch')}, seed {r.get('seed')}): "
            f"**{r.get('status')}**: {why}"
        )
    lines += [f"- `{path}`: **unreadable**: {why}" for path, why in runs.unreadable]
    return "\n".join(lines)


def _by_status(runs: Runs) -> str:
    """`` (2 failed, 1 diverged, 1 unreadable)``: how the runs that did not complete ended."""
    counts = Counter(r.get("status") for r in runs.not_completed)
    counts.update({"unreadable": len(runs.unreadable)} if runs.unreadable else {})
    return f" ({', '.join(f'{n} {status}' for status, n in sorted(counts.items()))})" if counts else ""


def report(
    source: str | Path,
    out_dir: str | Path | None = None,
    runs: Runs | None = None,
    log_wandb: bool = False,
    title: str | None = None,
) -> Report:
    runs = runs or collect_runs(source)
    out = Path(out_dir or source)
    out.mkdir(parents=True, exist_ok=True)
    done = runs.completed
    task = done[0].get("task", "classify") if done else "classify"
    headline, curve_metric = HEADLINE.get(task, ("test/err", "val/err"))
    title = title or (done[0].get("experiment") if done else None) or Path(source).name

    table = summarize(done)
    table.to_csv(out / "results.csv", index=False)
    runs_frame(done).to_csv(out / "runs.csv", index=False)
    # The table shows the headline metric and its variants (test/err, test/err_precise_bn, ...).
    metrics = [c[: -len(" mean")] for c in table.columns if c.endswith(" mean") and c.startswith(headline)]
    metrics = sorted(metrics, key=lambda m: m != headline) or [headline]
    failed = len(runs.not_completed) + len(runs.unreadable)
    text = [
        f"# {title}\n",
        f"{len(done)} completed runs, {failed} not completed{_by_status(runs)}. "
        "Cells: mean ± the half-width of its 95% t-interval over seeds.\n",
        markdown(table, metrics),
    ]
    diffs = differences(done, headline)
    if not diffs.empty:
        diffs.to_csv(out / "differences.csv", index=False)
        text += ["\n" + differences_markdown(diffs, headline)]
    if searched_lr(done):  # an lr sweep: each arm's winner on val, for the final sweep to read
        choice = lr_choice.choose(runs_frame(done).rename(columns={"task.optim.lr": "lr"}), curve_metric)
        choice.to_csv(out / "lr_choice.csv", index=False)
        lr_choice.write(choice, out / "lr_choice.yaml")
        text += [
            "\n" + lr_choice.markdown(choice, curve_metric),
            f"The final sweep: `task.optim.lr_choice={out / 'lr_choice.yaml'}`.\n",
        ]
    if failed:
        text += ["\n## Runs that did not complete\n", _failures(runs) + "\n"]

    files = [out / "results.csv", out / "results.md"]
    for fig in (
        plots.error_vs_batch(table, headline, out / "error_vs_batch.png", title),
        plots.batch_stat_gap(table, out / "batch_stat_gap.png", title),
        plots.training_curves(done, curve_metric, out / "training_curves.png", title),
    ):
        if fig is not None:
            files.append(fig)
            text.append(f"\n![{fig.stem}]({fig.name})\n")
    (out / "results.md").write_text("\n".join(text))
    page = _write_page(source, out, title, task, runs, table, metrics)
    files += [page] if page else []
    result = Report(table, "\n".join(text), files, failed)
    if log_wandb:
        _log_to_wandb(result, done, title, out)
    return result


def _write_page(source, out: Path, title: str, task: str, runs: Runs, table, metrics: list[str]) -> Path | None:
    """index.html, if plotly is installed; else one line that says how to get it."""
    try:
        # Imported here, not at the top: plotly is an optional dependency (.[html]) and html imports it.
        from normlab.report import html
    except ImportError:
        print("index.html skipped: plotly is not installed. Fix: pip install -e '.[html]'")
        return None
    path = out / "index.html"
    path.write_text(html.page(Path(source), title, task, runs, table, metrics))
    return path


def _log_to_wandb(result: Report, runs: list[dict], title: str, out: Path) -> None:
    import wandb

    cfg = (runs[0].get("config", {}).get("logger") or {}).get("wandb") or {} if runs else {}
    run = wandb.init(
        project=cfg.get("project", "normlab"),
        entity=cfg.get("entity"),
        group=title,
        job_type="report",
        name=f"report-{title}",
        dir=str(out),
        mode=cfg.get("mode", "offline"),
    )
    run.log({"results": wandb.Table(dataframe=result.table.fillna(float("nan")))})
    run.log({p.stem: wandb.Image(str(p)) for p in result.files if p.suffix == ".png"})
    run.finish()


__all__ = ["Report", "collect_runs", "collect_wandb", "report"]
