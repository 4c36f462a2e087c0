"""Runs -> one table row per configuration, metrics as mean, std and 95% interval over seeds;
differences between arms and between batch sizes with their intervals."""

from __future__ import annotations

import math

import pandas as pd

from normlab.report.stats import t_halfwidth, welch
from normlab.tasks.lr_choice import arm_name

# The metric each task is judged by, and the per-epoch metric its curves show.
HEADLINE = {"classify": ("test/err", "val/err"), "lm": ("val/loss", "val/loss"), "style": ("val/loss", "val/loss")}
# Config keys that name a configuration when a sweep varies them (the seed never does).
AXES = ["task.name", "model.name", "data.name", "norm.num_groups", "norm.group_size", "model.norm_position"]


def lookup(config: dict, dotted: str):
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def arm(run: dict) -> str:
    """The compared thing: the norm, marked ``+ws`` when convolutions are weight-standardized."""
    return arm_name(run.get("norm"), bool(lookup(run.get("config", {}), "model.ws")))


def line_name(arm_name: str, values: dict) -> str:
    """A plot line's label: the arm and the values of the swept axes, e.g. ``group+ws num_groups=4``."""
    return " ".join([arm_name, *(f"{k.split('.')[-1]}={v}" for k, v in values.items() if v is not None)])


def varied_axes(runs: list[dict]) -> list[str]:
    # A key only some runs have (num_groups of GroupNorm runs beside BatchNorm ones) is not an axis.
    values = {k: {str(lookup(r.get("config", {}), k)) for r in runs} - {"None"} for k in AXES}
    return [k for k in AXES if len(values[k]) > 1] + (["task.optim.lr"] if searched_lr(runs) else [])


def searched_lr(runs: list[dict]) -> bool:
    """Whether the sweep searched the base lr: several rates for one arm and batch. A rate chosen per
    arm (``lr_choice``) is a property of that arm's row, not an axis of its own."""
    rates: dict[tuple, set] = {}
    for r in runs:
        rates.setdefault((arm(r), r.get("batch")), set()).add(lookup(r.get("config", {}), "task.optim.lr"))
    return any(len(v) > 1 for v in rates.values())


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per completed run: its axes, seed and every numeric metric."""
    axes = varied_axes(runs)
    rows = []
    for r in runs:
        row = {"arm": arm(r), "batch": r.get("batch"), "seed": r.get("seed"), "wall_time_s": r.get("wall_time_s")}
        row.update({k: lookup(r.get("config", {}), k) for k in axes})
        for k, v in (r.get("metrics") or {}).items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                row[k] = v
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(runs: list[dict], metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, std, 95% t-interval half-width (``ci95``) and count over seeds for each (axes, arm, batch);
    a missing metric is NaN, not 0."""
    df = runs_frame(runs)
    if df.empty:
        return df
    keys = [k for k in varied_axes(runs)] + ["arm", "batch"]
    metrics = metrics or sorted(c for c in df.columns if c.startswith(("test/", "val/")))
    metrics = [m for m in metrics if m in df.columns] + ["wall_time_s"]
    grouped = df.groupby(keys, dropna=False)
    out = grouped[metrics].agg(["mean", "std", ("ci95", t_halfwidth), "count"])
    out.columns = [f"{m} {stat}" for m, stat in out.columns]
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def markdown(table: pd.DataFrame, metrics: list[str]) -> str:
    """``mean +- ci95 (n)`` cells, one column per metric: the 95% t-interval of the mean over seeds."""
    if table.empty:
        return "_no completed runs_\n"
    keys = [c for c in table.columns if " " not in c and c != "seeds"]
    header = keys + metrics + ["seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [str(row[k]) for k in keys]
        cells += [cell(row, m) for m in metrics]
        cells.append(str(row["seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cell(row: pd.Series, metric: str) -> str:
    """``mean ± ci95``, ``(n=k)`` when fewer seeds than the row's have the metric, ``n/a`` when none has."""
    mean, half = row.get(f"{metric} mean"), row.get(f"{metric} ci95")
    if mean is None or pd.isna(mean):
        return "n/a"
    n = row.get(f"{metric} count", row["seeds"])
    spread = "" if half is None or pd.isna(half) else f" ± {half:.2f}"
    return f"{mean:.2f}{spread}" + ("" if n == row["seeds"] else f" (n={n})")


def baseline_arm(arms: list[str]) -> str:
    """The arm the others are compared with: BatchNorm where it is in the sweep, else the first."""
    return "batch" if "batch" in arms else sorted(arms)[0]


def differences(runs: list[dict], metric: str) -> pd.DataFrame:
    """Each arm minus the baseline arm at every batch size, each arm's smallest batch minus its
    largest, and in a sweep of one knob of one arm each value minus the first, as Welch intervals over
    seeds. Rows: what is compared, the difference, its half-width, the seeds on each side, and whether
    the interval excludes 0."""
    df = runs_frame(runs)
    if df.empty or metric not in df.columns:
        return pd.DataFrame()
    axes = varied_axes(runs)
    rows = []
    for key, part in df.groupby(axes, dropna=False) if axes else [((), df)]:
        where = " ".join(f"{a.split('.')[-1]}={v}" for a, v in zip(axes, key if isinstance(key, tuple) else (key,)))
        arms = sorted(part["arm"].unique())
        base = baseline_arm(arms)
        values = {(a, b): g[metric].tolist() for (a, b), g in part.groupby(["arm", "batch"])}
        for (a, b), xs in sorted(values.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if a != base and (base, b) in values:
                rows.append(_row(where, f"{a} - {base}", b, welch(xs, values[(base, b)])))
        for a in arms:
            batches = sorted(b for arm_, b in values if arm_ == a)
            if len(batches) > 1:
                lo, hi = batches[0], batches[-1]
                rows.append(_row(where, f"{a} batch {lo} - batch {hi}", None, welch(values[(a, lo)], values[(a, hi)])))
    if df["arm"].nunique() == 1 and len(axes) == 1:  # an ablation of one knob (gn_groups' G): each value - the first
        name, by = axes[0].split(".")[-1], {v: g[metric].tolist() for v, g in df.groupby(axes[0])}
        first, *rest = sorted(by)
        rows += [_row("", f"{name}={v} - {name}={first}", None, welch(by[v], by[first])) for v in rest]
    return pd.DataFrame(rows)


def _row(where: str, compared: str, batch, d) -> dict:
    return {
        "where": where,
        "compared": compared,
        "batch": batch,
        "diff": d.diff,
        "ci95": d.half,
        "seeds": f"{d.n_a}/{d.n_b}",
        "significant": d.significant,
    }


def differences_markdown(table: pd.DataFrame, metric: str) -> str:
    if table.empty:
        return ""
    lines = [
        f"Differences in {metric} (95% Welch interval over seeds; significant: the interval excludes 0):\n",
        "| compared | batch | difference | seeds | significant |",
        "|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        ci = "" if pd.isna(r["ci95"]) else f" ± {r['ci95']:.2f}"
        what = f"{r['where']} {r['compared']}".strip()
        batch = "" if r["batch"] is None or pd.isna(r["batch"]) else str(int(r["batch"]))
        yes = "yes" if r["significant"] else "no"
        lines.append(f"| {what} | {batch} | {r['diff']:+.2f}{ci} | {r['seeds']} | {yes} |")
    return "\n".join(lines) + "\n"
