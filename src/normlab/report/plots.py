"""The figures of a sweep, as PNG files a person would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from normlab.report.collect import curves  # noqa: E402
from normlab.report.table import AXES, arm, line_name, lookup, varied_axes  # noqa: E402


def error_vs_batch(table: pd.DataFrame, metric: str, out: Path, title: str) -> Path | None:
    """Error against images per batch, one line per arm, log2 x-axis (Wu & He 2018, Figure 1)."""
    col = f"{metric} mean"
    if col not in table or table["batch"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    axes = [c for c in AXES if c in table.columns]  # swept besides norm and batch: one line per value
    for key, rows in table.sort_values("batch").groupby(["arm", *axes], dropna=False):
        name = line_name(key[0], {k: v for k, v in zip(axes, key[1:]) if not pd.isna(v)})
        ax.errorbar(rows["batch"], rows[col], yerr=_bars(rows, metric), marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    batches = sorted(table["batch"].unique())
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.invert_xaxis()  # the paper reads from large to small batches
    ax.set(xlabel="images per batch (per device)", ylabel=f"{metric} (mean, 95% interval over seeds)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out)


def batch_stat_gap(table: pd.DataFrame, out: Path, title: str) -> Path | None:
    """For batch-dependent norms: test error in eval mode, with batch statistics, and with PreciseBN."""
    cols = {
        "test/err": "eval mode (running averages)",
        "test/err_batch_stats": "batch statistics (train mode)",
        "test/err_precise_bn": "PreciseBN",
    }
    rows = (
        table.dropna(subset=["test/err_batch_stats mean"]) if "test/err_batch_stats mean" in table else table.iloc[0:0]
    )
    if rows.empty:
        return None
    arms = sorted(rows["arm"].unique())
    fig, axes = plt.subplots(1, len(arms), figsize=(5 * len(arms), 4), squeeze=False)
    for ax, name in zip(axes[0], arms):
        sub = rows[rows["arm"] == name].sort_values("batch")
        for col, label in cols.items():
            if f"{col} mean" in sub:
                ax.errorbar(sub["batch"], sub[f"{col} mean"], yerr=_bars(sub, col), marker="o", capsize=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(sub["batch"]), [str(b) for b in sub["batch"]])
        ax.set(xlabel="images per batch", ylabel="test error (%), 95% interval", title=f"{title}: {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out)


def _bars(rows: pd.DataFrame, metric: str) -> pd.Series:
    """Error bars: the 95% t-interval over seeds, as in the tables (none for a single seed)."""
    return rows[f"{metric} ci95"].fillna(0) if f"{metric} ci95" in rows else rows[f"{metric} std"].fillna(0)


def curve_table(runs: list[dict], metric: str) -> pd.DataFrame | None:
    """``metric`` per epoch of every run, labelled by its line (arm and swept values) and batch."""
    axes, frames = varied_axes(runs), []
    for r in runs:
        df = curves(r)
        if df is not None and metric in df and "epoch" in df:
            name = line_name(arm(r), {k: lookup(r.get("config", {}), k) for k in axes})
            frames.append(df[["epoch", metric]].dropna().assign(arm=name, batch=r.get("batch")))
    return pd.concat(frames) if frames else None


def training_curves(runs: list[dict], metric: str, out: Path, title: str) -> Path | None:
    """``metric`` per epoch, one panel per batch size, one line per arm and swept value (seeds averaged)."""
    data = curve_table(runs, metric)
    if data is None:
        return None
    batches, names = sorted(data["batch"].unique()), sorted(data["arm"].unique())
    many = len(names) > 6  # a whole norm zoo: legend beside the panels, and colours that do not repeat
    colors = dict(zip(names, plt.cm.tab20.colors if len(names) > 10 else plt.cm.tab10.colors))
    fig, axes = plt.subplots(1, len(batches), figsize=(4 * len(batches) + 2.5 * many, 3.5), squeeze=False, sharey=True)
    for ax, b in zip(axes[0], batches):
        for name, rows in data[data["batch"] == b].groupby("arm"):
            mean = rows.groupby("epoch")[metric].mean()
            ax.plot(mean.index + 1, mean.values, marker=".", label=name, color=colors.get(name))
        ax.set(title=f"batch {b}", xlabel="epoch", ylabel=metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    if many:
        axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    else:
        axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
