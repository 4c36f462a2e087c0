"""The panels of a dashboard, by kind: W&B panel objects (wandb-workspaces reports v2), the same for the
saved workspace and the report.

The metric names are those the tasks and callbacks log: ``val/err`` and ``test/err`` (tasks/classify.py),
``val/loss`` and ``val/bpc`` (tasks/lm.py), ``val/style``, ``val/content`` and ``val/style_drop``, and the
image ``held_out/stylized`` (tasks/style.py), ``train/loss_step`` and ``train/loss_epoch``
(tasks/train_metrics.py), ``train/samples_per_s`` and ``train/tokens_per_s`` (callbacks/throughput.py),
``test/err_precise_bn`` and ``test/err_batch_stats`` (callbacks/norm_stats.py). A summary of a curve with
``define_metric`` summaries (run/loggers.py SUMMARIES) is read as ``<key>.last``, the final value, which is
what the results table reports.

Grouping is left to the runs table (the dashboard's ``group_by``: its arms, and the batch if swept): every
panel aggregates each group with its mean and standard deviation, i.e. over seeds. W&B's log axis is a
switch without a base; on it the powers of two of a batch sweep are evenly spaced, as on a log2 axis.
"""

from __future__ import annotations

from dataclasses import dataclass

from normlab.dashboard.definitions import BATCH, LR, Dashboard
from normlab.dashboard.lib import workspaces
from normlab.report.table import HEADLINE
from normlab.run.loggers import SUMMARIES

STEP = "trainer/global_step"  # every curve's step axis (WandbLogger's step metric)
EPOCH = "epoch"  # Lightning logs it with every metric: curves of runs at different batch sizes line up on it
CURVE = {"classify": ("val/err", EPOCH), "lm": ("val/loss", STEP), "style": ("val/loss", EPOCH)}
THROUGHPUT = {"classify": "train/samples_per_s", "lm": "train/tokens_per_s", "style": "train/samples_per_s"}
BN_STATS = ("test/err", "test/err_precise_bn", "test/err_batch_stats")
FIGURES = ("error_vs_batch", "batch_stat_gap", "training_curves")  # the PNGs scripts/report.py logs
STYLE_IMAGE = "held_out/stylized"
AGG = {"groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}  # over the seeds of each runs-table group


def summary_key(metric: str) -> str:
    """The run-summary name of a metric: ``val/err`` -> ``val/err.last`` (define_metric keeps min and last)."""
    return f"{metric}.last" if metric in SUMMARIES else metric


def headline(d: Dashboard) -> str:
    return d.headline or summary_key(HEADLINE[d.task][0])


@dataclass(frozen=True)
class Panel:
    """One panel as plain data, drawn by W&B here (``to_wandb``) and by the offline page (report/figures.py).

    ``plot``: line (history metrics ``y`` per ``x``), bar (summary metrics ``y`` per group), scatter (summary
    ``y[0]`` against config key ``x``, log x), parallel (config keys ``columns``, then summary ``y[0]``) or
    media (image keys ``y``)."""

    plot: str
    title: str
    y: tuple[str, ...]
    x: str | None = None
    columns: tuple[str, ...] = ()


def _against_batch(metric: str) -> Panel:
    return Panel("scatter", f"{metric} against images per device (log x)", (metric,), BATCH)


def specs(d: Dashboard, kind: str) -> list[Panel]:
    """The panels of one kind (one section of the workspace)."""
    h, (curve, curve_x), speed = headline(d), CURVE[d.task], THROUGHPUT[d.task]
    if kind == "headline":
        return ([_against_batch(h)] if d.batch_swept else []) + [Panel("bar", f"{h}, mean ± std over seeds", (h,))]
    if kind == "val_curves":
        return [Panel("line", f"{curve} per {curve_x}, mean ± std over seeds", (curve,), curve_x)]
    if kind == "train_loss":
        return [
            Panel("line", "training loss per step", ("train/loss_step",), STEP),
            Panel("line", "training loss, epoch mean", ("train/loss_epoch",), EPOCH),
        ]
    if kind == "throughput":
        return [Panel("bar", f"{speed} (last epoch)", (speed,)), Panel("line", f"{speed} per epoch", (speed,), EPOCH)]
    if kind == "batch_stats":  # eval mode vs PreciseBN vs batch statistics; only BN-family runs log the last two
        return [Panel("bar", "test/err: eval mode, PreciseBN, batch statistics", BN_STATS)] + (
            [_against_batch(m) for m in BN_STATS[1:]] if d.batch_swept else []
        )
    if kind == "parallel":
        keys = tuple(dict.fromkeys([*d.arms, BATCH, LR]))
        return [Panel("parallel", f"{', '.join(keys)} -> {h}", (h,), columns=keys)]
    if kind == "lm_loss":  # grouped by norm and norm position (the dashboard's arms)
        return [
            Panel("line", "val/loss (nats/char) per step", ("val/loss",), STEP),
            Panel("line", "train/loss_step (nats/char)", ("train/loss_step",), STEP),
        ]
    if kind == "lm_bpc":
        return [
            Panel("line", "val/bpc per step", ("val/bpc",), STEP),
            Panel("bar", "val/bpc (final)", ("val/bpc.last",)),
            Panel("line", "train/bpc per epoch", ("train/bpc",), EPOCH),
        ]
    if kind == "style_loss":
        return [
            Panel("line", "val/style (held-out style loss)", ("val/style",), EPOCH),
            Panel("line", "val/content", ("val/content",), EPOCH),
            Panel("bar", "val/style_drop = 1 - style / untrained style", ("val/style_drop.last",)),
        ]
    if kind == "style_images":  # content | stylized | style, logged every epoch: the latest of each run
        return [Panel("media", "held-out images per run (content | stylized)", (STYLE_IMAGE,))]
    raise KeyError(f"unknown panel kind {kind!r} (known: {', '.join(KINDS)})")


def to_wandb(wr, p: Panel):
    """The wandb-workspaces (reports v2) object of a panel."""
    if p.plot == "line":
        return wr.LinePlot(title=p.title, x=p.x, y=list(p.y), aggregate=True, **AGG)
    if p.plot == "bar":
        return wr.BarPlot(title=p.title, metrics=[wr.SummaryMetric(m) for m in p.y], aggregate=True, **AGG)
    if p.plot == "scatter":  # a summary metric of every run at its images per device, x on a log scale
        return wr.ScatterPlot(
            title=p.title, x=wr.Config(p.x), y=wr.SummaryMetric(p.y[0]), log_x=True, running_ymean=True
        )
    if p.plot == "parallel":
        return wr.ParallelCoordinatesPlot(
            title=p.title,
            columns=[
                *(wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k), log=k == BATCH or None) for k in p.columns),
                wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(p.y[0])),
            ],
        )
    return wr.MediaBrowser(title=p.title, media_keys=list(p.y), gallery_axis="run")


def kind_panels(d: Dashboard, kind: str) -> list:
    """The W&B panels of one kind."""
    wr = workspaces().wr
    return [to_wandb(wr, p) for p in specs(d, kind)]


KINDS = (
    "headline",
    "val_curves",
    "train_loss",
    "throughput",
    "batch_stats",
    "parallel",
    "lm_loss",
    "lm_bpc",
    "style_loss",
    "style_images",
)
TITLES = {
    "headline": "Headline",
    "val_curves": "Validation curves",
    "train_loss": "Training loss",
    "throughput": "Throughput",
    "batch_stats": "Batch statistics: PreciseBN and train-mode gaps",
    "parallel": "Parallel coordinates",
    "lm_loss": "Loss per norm and norm position",
    "lm_bpc": "Bits per char",
    "style_loss": "Style loss",
    "style_images": "Image grids per norm",
}
