"""Find the runs of a sweep: every ``summary.json`` below a directory, or a W&B group.

A run is the dict of its ``summary.json``. Unreadable files (a truncated write, a kill at the
wrong moment) are listed, never silently dropped.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Runs:
    runs: list[dict] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    @property
    def completed(self) -> list[dict]:
        return [r for r in self.runs if r.get("status") == "completed"]

    @property
    def not_completed(self) -> list[dict]:
        return [r for r in self.runs if r.get("status") != "completed"]


def collect_runs(sweep_dir: str | Path) -> Runs:
    out = Runs()
    for path in sorted(Path(sweep_dir).rglob("summary.json")):
        if "wandb" in path.parts:
            continue
        try:
            run = json.loads(path.read_text())
            run.setdefault("run_dir", str(path.parent))
            run["run_dir"] = str(path.parent)  # the directory as found now, even if it moved
            out.runs.append(run)
        except (OSError, json.JSONDecodeError) as err:
            out.unreadable.append((str(path), f"{type(err).__name__}: {err}"))
    return out


def history(run: dict) -> pd.DataFrame | None:
    """Every logged row of one run (each metric at its own steps), from its CSV log or W&B history."""
    if "history" in run:
        return pd.DataFrame(run["history"])
    path = Path(run["run_dir"]) / "csv" / "metrics.csv"
    return _read_csv(str(path), path.stat().st_mtime_ns).copy() if path.exists() else None


@functools.lru_cache(maxsize=512)
def _read_csv(path: str, mtime_ns: int) -> pd.DataFrame:
    """Parsed once per report, not once per panel that plots the run (a changed file is read again)."""
    return pd.read_csv(path)


def curves(run: dict) -> pd.DataFrame | None:
    """Per-epoch metrics of one run, from its CSV log (or the W&B history it came with)."""
    df = history(run)
    if df is None or "history" in run:
        return df
    return df.groupby("epoch").last().reset_index() if "epoch" in df else df


def summary_metrics(summary: dict) -> dict:
    """A W&B run's summary as numbers: ``{"val/err": {"min": a, "last": b}}`` (what define_metric's
    min,last makes) becomes ``val/err = b`` (the final value, as in summary.json) and ``val/err.min = a``."""
    out = {}
    for k, v in summary.items():
        if isinstance(v, dict) or hasattr(v, "items"):
            for op, x in dict(v.items()).items():
                if isinstance(x, (int, float)):
                    out[k if op == "last" else f"{k}.{op}"] = x
        elif isinstance(v, (int, float)):
            out[k] = v
    return out


def collect_wandb(path: str, group: str) -> Runs:
    """Runs of one W&B group (``entity/project``), as summary-like dicts. Needs the network."""
    import wandb

    out = Runs()
    for run in wandb.Api().runs(path, filters={"group": group}):
        config = {k: v for k, v in run.config.items() if not k.startswith("_")}
        summary = summary_metrics(dict(run.summary.items()))
        history = run.history(samples=500, pandas=False)
        out.runs.append(
            {
                "status": "completed" if run.state == "finished" else run.state,
                "task": config.get("task", {}).get("name"),
                "model": config.get("model", {}).get("name"),
                "norm": config.get("norm", {}).get("name"),
                "batch": config.get("data", {}).get("batch"),
                "seed": config.get("seed"),
                "experiment": group,
                "config": config,
                "metrics": summary,
                "run_dir": run.url,
                "history": history,
            }
        )
    return out
