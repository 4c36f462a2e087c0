"""Runs -> one table row per configuration, metrics as mean and std over seeds."""

from __future__ import annotations

import math

import pandas as pd

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
    config = run.get("config", {})
    return f"{run.get('norm')}{'+ws' if lookup(config, 'model.ws') else ''}"


def line_name(arm_name: str, values: dict) -> str:
    """A plot line's label: the arm and the values of the swept axes, e.g. ``group+ws num_groups=4``."""
    return " ".join([arm_name, *(f"{k.split('.')[-1]}={v}" for k, v in values.items() if v is not None)])


def varied_axes(runs: list[dict]) -> list[str]:
    # A key only some runs have (num_groups of GroupNorm runs beside BatchNorm ones) is not an axis.
    values = {k: {str(lookup(r.get("config", {}), k)) for r in runs} - {"None"} for k in AXES}
    return [k for k in AXES if len(values[k]) > 1]


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
    """Mean, std and count over seeds for each (axes, arm, batch); a missing metric is NaN, not 0."""
    df = runs_frame(runs)
    if df.empty:
        return df
    keys = [k for k in varied_axes(runs)] + ["arm", "batch"]
    metrics = metrics or sorted(c for c in df.columns if c.startswith(("test/", "val/")))
    metrics = [m for m in metrics if m in df.columns] + ["wall_time_s"]
    grouped = df.groupby(keys, dropna=False)
    out = grouped[metrics].agg(["mean", "std", "count"])
    out.columns = [f"{m} {stat}" for m, stat in out.columns]
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def markdown(table: pd.DataFrame, metrics: list[str]) -> str:
    """``mean +- std (n)`` cells, one column per metric."""
    if table.empty:
        return "_no completed runs_\n"
    keys = [c for c in table.columns if " " not in c and c != "seeds"]
    header = keys + metrics + ["seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [str(row[k]) for k in keys]
        for m in metrics:
            mean, std = row.get(f"{m} mean"), row.get(f"{m} std")
            if mean is None or pd.isna(mean):
                cells.append("n/a")
            else:
                n = row.get(f"{m} count", row["seeds"])
                cells.append(f"{mean:.2f}" + ("" if pd.isna(std) else f" ± {std:.2f}") + ("" if n == row["seeds"] else f" (n={n})"))
        cells.append(str(row["seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
