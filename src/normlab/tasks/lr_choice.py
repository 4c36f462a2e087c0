"""A learning rate for every arm, chosen on the validation split.

A comparison of norms at one learning rate measures the learning rate as much as the norm. The
protocol: a grid sweep of the base rate ``task.optim.lr`` (factor 2 apart, around the linear-scaling
rule's 0.1 at 32 images; the rate a run uses is still scaled by its batch), one seed, judged on
``val/err``. ``choose`` picks each (arm, batch)'s winner and says where it lies in the grid, since
a winner at the edge of the grid may not be the best rate. ``lr_choice.yaml`` holds the winners;
the final sweep reads it (``task.optim.lr_choice=<file>``), runs every arm at its own rate on
more seeds, and is reported on the test split.

    python train.py -m experiment=gn_vs_bn_lr                 # the grid, on val
    python scripts/report.py <that sweep>                      # writes lr_choice.yaml
    python train.py -m experiment=gn_vs_bn task.optim.lr_choice=<that sweep>/lr_choice.yaml
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from omegaconf import DictConfig, open_dict

from normlab.errors import ConfigError


def arm_name(norm: str, ws: bool) -> str:
    """The compared thing: the norm, marked ``+ws`` when convolutions are weight-standardized."""
    return f"{norm}{'+ws' if ws else ''}"


def choose(runs: pd.DataFrame, metric: str = "val/err") -> pd.DataFrame:
    """One row per (arm, batch) of a grid sweep (columns arm, batch, lr, ``metric``): the grid, the
    winning base lr (lowest mean ``metric`` over its seeds), its value, and where it lies."""
    rows = []
    for (arm, batch), part in runs.dropna(subset=[metric]).groupby(["arm", "batch"]):
        means = part.groupby("lr")[metric].mean().sort_index()
        lr = float(means.idxmin())
        grid = [float(x) for x in means.index]
        where = "inside" if len(grid) < 2 or grid[0] < lr < grid[-1] else ("lowest" if lr == grid[0] else "highest")
        rows.append(
            {
                "arm": arm,
                "batch": int(batch),
                "grid": " ".join(f"{x:g}" for x in grid),
                "lr": lr,
                metric: float(means.min()),
                "edge": where != "inside" and len(grid) > 1,
                "where": where,
            }
        )
    return pd.DataFrame(rows)


def past_edges(choice: pd.DataFrame) -> list[tuple[str, int, float]]:
    """(arm, batch, lr) one grid step beyond every edge winner: half the lowest, twice the highest.
    The protocol extends the grid once, so an edge winner is either confirmed or moved; one still at
    the (new) edge afterwards stays flagged."""
    return [
        (r["arm"], int(r["batch"]), r["lr"] / 2 if r["where"] == "lowest" else r["lr"] * 2)
        for _, r in choice[choice["edge"]].iterrows()
    ]


def arm_overrides(arm: str) -> list[str]:
    """The command-line overrides of an arm name (``group+ws``: ``norm=group model.ws=true``)."""
    norm, _, ws = arm.partition("+")
    return [f"norm={norm}", f"model.ws={'true' if ws else 'false'}"]


def markdown(choice: pd.DataFrame, metric: str = "val/err") -> str:
    lines = [
        f"Learning rate chosen on {metric} (base lr at 32 images, one seed per grid point; "
        "**edge**: the winner is the grid's lowest or highest value, so a better rate may lie outside):\n",
        f"| arm | batch | grid | chosen lr | {metric} | where |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in choice.iterrows():
        where = f"**edge** ({r['where']})" if r["edge"] else r["where"]
        lines.append(f"| {r['arm']} | {r['batch']} | {r['grid']} | {r['lr']:g} | {r[metric]:.2f} | {where} |")
    return "\n".join(lines) + "\n"


def write(choice: pd.DataFrame, path: Path) -> None:
    table: dict[str, dict[int, float]] = {}
    for _, r in choice.iterrows():
        table.setdefault(r["arm"], {})[int(r["batch"])] = float(r["lr"])
    path.write_text(yaml.safe_dump(table, sort_keys=True))


def apply(cfg: DictConfig) -> float | None:
    """Set ``task.optim.lr`` from ``task.optim.lr_choice`` (a file ``write`` made), for this run's
    arm and batch per device; a run the file has no rate for is a config error, not a silent default."""
    path = cfg.task.optim.get("lr_choice")
    if not path:
        return None
    try:
        table = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(
            f"task.optim.lr_choice={path} cannot be read ({type(err).__name__}). "
            f"Fix: give the lr_choice.yaml that scripts/report.py wrote for the lr sweep."
        ) from None
    arm, batch = arm_name(cfg.norm.name, bool(cfg.model.get("ws"))), int(cfg.data.batch)
    lr = (table.get(arm) or {}).get(batch)
    if lr is None:
        have = ", ".join(f"{a} at {sorted(b)}" for a, b in sorted(table.items())) or "nothing"
        raise ConfigError(
            f"{path} has no learning rate for {arm} at batch {batch} (it has {have}). "
            f"Fix: include that arm and batch in the lr sweep, or drop task.optim.lr_choice."
        )
    with open_dict(cfg):
        cfg.task.optim.lr = float(lr)
    return float(lr)
