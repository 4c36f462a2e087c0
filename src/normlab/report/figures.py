"""The dashboard's panels (dashboard/panels.py ``specs``) as plotly figures of a sweep on disk.

Every run is a trace of its own (hover: its directory and seed), coloured by its group (the arm, and the
batch where the sweep varies it): the same panels and metric names as the W&B workspace, read from the
runs' summary.json and csv/metrics.csv. A W&B summary name ``<key>.last`` is summary.json's ``<key>``;
``<key>.min`` is the smallest value of the curve when the summary does not hold it.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import plotly.graph_objects as go
from plotly.colors import qualitative

from normlab.dashboard.definitions import BATCH, LR, Dashboard
from normlab.dashboard.panels import EPOCH, STEP, Panel
from normlab.report.collect import history
from normlab.report.stats import t_halfwidth
from normlab.report.table import arm, line_name, lookup

COLUMN = {STEP: "step", EPOCH: "epoch"}  # W&B's x axes in the CSV log
ARM_KEYS = ("norm_name", "model.ws")  # what table.arm already names
HEIGHT = 380


def config_value(run: dict, key: str):
    """A dashboard's config key (run/loggers.py flat_config, or a nested path) of a run's summary."""
    flat = {"norm_name": run.get("norm"), BATCH: run.get("batch"), "seed": run.get("seed")}
    if key == LR:
        return lookup(run.get("config", {}), "task.optim.lr")
    return flat[key] if key in flat else lookup(run.get("config", {}), key)


def summary_value(run: dict, metric: str) -> float | None:
    metrics = run.get("metrics") or {}
    name = metric[: -len(".last")] if metric.endswith(".last") else metric
    value = metrics.get(name)
    if value is None and metric.endswith((".min", ".max")):
        df, curve = history(run), metric[:-4]
        if df is not None and curve in df and df[curve].notna().any():
            value = df[curve].min() if metric.endswith(".min") else df[curve].max()
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def group(d: Dashboard, run: dict, with_batch: bool) -> str:
    rest = {k: config_value(run, k) for k in d.arms if k not in ARM_KEYS}
    name = line_name(arm(run), rest)
    return f"{name} b={run.get('batch')}" if with_batch and d.batch_swept else name


def label(run: dict) -> str:
    return f"{Path(str(run.get('run_dir'))).name}: {arm(run)} b={run.get('batch')}"


def _colors(names) -> dict[str, str]:
    names = sorted(set(names), key=_natural)
    palette = qualitative.Plotly if len(names) <= 10 else qualitative.Dark24 + qualitative.Light24
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def _natural(name: str):
    """``b=2`` before ``b=16``."""
    return [int(t) if t.isdigit() else t for t in name.replace("=", " ").split()]


def line(d: Dashboard, runs: list[dict], p: Panel) -> go.Figure:
    fig, x = go.Figure(), COLUMN.get(p.x, p.x)
    colors, shown = _colors(group(d, r, True) for r in runs), set()
    for r in sorted(runs, key=lambda r: _natural(group(d, r, True))):
        df, g = history(r), group(d, r, True)
        for m in p.y:
            if df is None or m not in df or x not in df:
                continue
            pts = df[[x, m]].dropna()
            fig.add_scatter(
                x=pts[x],
                y=pts[m],
                mode="lines+markers" if len(pts) < 30 else "lines",
                name=g,
                legendgroup=g,
                showlegend=g not in shown,
                line={"color": colors[g], "width": 1.5},
                marker={"size": 5},
                customdata=[[label(r), r.get("seed")]] * len(pts),
                hovertemplate=f"%{{customdata[0]}}<br>seed %{{customdata[1]}}<br>{x} %{{x}}<br>{m} %{{y:.4g}}"
                "<extra></extra>",
            )
            shown.add(g)
    return _layout(fig, p, x, ", ".join(p.y))


def bar(d: Dashboard, runs: list[dict], p: Panel) -> go.Figure:
    fig = go.Figure()
    groups = sorted({group(d, r, True) for r in runs}, key=_natural)
    for m in p.y:
        values = {
            g: [v for r in runs if group(d, r, True) == g and (v := summary_value(r, m)) is not None] for g in groups
        }
        kept = [g for g in groups if values[g]]
        if not kept:
            continue
        means = [sum(values[g]) / len(values[g]) for g in kept]
        # std, not the table's t-interval: the W&B bar panel of the same spec can only show std (AGG)
        stds = [statistics.stdev(values[g]) if len(values[g]) > 1 else 0.0 for g in kept]
        fig.add_bar(
            x=kept,
            y=means,
            name=m,
            error_y={"type": "data", "array": stds},
            customdata=[[len(values[g])] for g in kept],
            hovertemplate=f"%{{x}}<br>{m} %{{y:.4g}}<br>%{{customdata[0]}} seeds<extra></extra>",
        )
    fig.update_layout(barmode="group")
    return _layout(fig, p, "group", "mean ± std over seeds")


def scatter(d: Dashboard, runs: list[dict], p: Panel) -> go.Figure:
    """Every run at its batch, and each group's mean with its 95% t-interval over seeds, log2 x."""
    fig, m = go.Figure(), p.y[0]
    points = [(r, config_value(r, p.x), summary_value(r, m)) for r in runs]
    points = [(r, b, v) for r, b, v in points if b is not None and v is not None]
    colors = _colors(group(d, r, False) for r, _, _ in points)
    for g in sorted(colors, key=_natural):
        mine = [(r, b, v) for r, b, v in points if group(d, r, False) == g]
        batches = sorted({b for _, b, _ in mine})
        at = {b: [v for _, bb, v in mine if bb == b] for b in batches}
        fig.add_scatter(
            x=batches,
            y=[sum(at[b]) / len(at[b]) for b in batches],
            name=g,
            legendgroup=g,
            mode="lines+markers",
            line={"color": colors[g]},
            error_y={"type": "data", "array": [_zero_nan(t_halfwidth(at[b])) for b in batches]},
            hovertemplate=f"{g}<br>batch %{{x}}<br>mean {m} %{{y:.4g}}<extra></extra>",
        )
        fig.add_scatter(
            x=[b for _, b, _ in mine],
            y=[v for _, _, v in mine],
            mode="markers",
            legendgroup=g,
            showlegend=False,
            marker={"color": colors[g], "size": 6, "opacity": 0.45},
            customdata=[[label(r), r.get("seed")] for r, _, _ in mine],
            hovertemplate=f"%{{customdata[0]}}<br>seed %{{customdata[1]}}<br>{m} %{{y:.4g}}<extra></extra>",
        )
    ticks = sorted({b for _, b, _ in points})
    if ticks:  # large to small batches, as error_vs_batch.png reads (Wu & He 2018); a log range is in log10
        pad = 0.1 * max(math.log10(ticks[-1] / ticks[0]), 0.3)
        rng = [math.log10(ticks[-1]) + pad, math.log10(ticks[0]) - pad]
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks], range=rng)
    return _layout(fig, p, f"{p.x} (log2)", f"{m}: runs, and mean ± 95% interval")


def _zero_nan(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def parallel(d: Dashboard, runs: list[dict], p: Panel) -> go.Figure:
    m = p.y[0]
    kept = [r for r in runs if summary_value(r, m) is not None]
    dims = []
    for key in p.columns:
        values = [config_value(r, key) for r in kept]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and values:
            if key == BATCH:  # log2, labelled by the batch
                ticks = sorted(set(values))
                dims.append(
                    {
                        "label": f"{key} (log2)",
                        "values": [math.log2(v) for v in values],
                        "tickvals": [math.log2(t) for t in ticks],
                        "ticktext": [str(t) for t in ticks],
                    }
                )
            else:
                dims.append({"label": key, "values": values})
        else:
            names = sorted({str(v) for v in values})
            dims.append(
                {
                    "label": key,
                    "values": [names.index(str(v)) for v in values],
                    "tickvals": list(range(len(names))),
                    "ticktext": names,
                }
            )
    scores = [summary_value(r, m) for r in kept]
    dims.append({"label": m, "values": scores})
    fig = go.Figure(go.Parcoords(dimensions=dims, line={"color": scores, "colorscale": "Viridis", "showscale": True}))
    fig.update_layout(title=p.title, height=HEIGHT, margin={"l": 80, "r": 40, "t": 70, "b": 30})
    return _empty(fig, m) if not kept else fig


def _layout(fig: go.Figure, p: Panel, x: str, y: str) -> go.Figure:
    fig.update_layout(
        title=p.title,
        height=HEIGHT,
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"font": {"size": 10}},
    )
    return fig if fig.data else _empty(fig, ", ".join(p.y))


def _empty(fig: go.Figure, metric: str) -> go.Figure:
    fig.add_annotation(
        text=f"no run of this sweep logged {metric}", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
    )
    return fig


DRAW = {"line": line, "bar": bar, "scatter": scatter, "parallel": parallel}


def figure(d: Dashboard, runs: list[dict], p: Panel) -> go.Figure | None:
    """The plotly figure of one panel; None for a media panel (the page shows those as images)."""
    return DRAW[p.plot](d, runs, p) if p.plot in DRAW else None
