"""A picture of a W&B workspace's layout, drawn from the spec that scripts/dashboard.py dumps, for the docs.

W&B cannot be reached from every machine, so the README shows the saved workspace as its spec says it is:
one row per section, one box per panel (its type, title and metrics), the runs' filter and grouping on top.

python scripts/dashboard.py --entity E --project P --experiment gn_vs_bn --dump spec.json
python scripts/draw_workspace.py spec.json --output docs/figures/wandb_workspace.png
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PER_ROW = 3  # the workspace's columnsPerPage


def panel_text(panel: dict) -> str:
    c = panel["config"]
    metrics = c.get("metrics") or ([c["yAxis"]] if "yAxis" in c else [])
    lines = [panel["viewType"], *textwrap.wrap(c.get("chartTitle", ""), 30)]
    shown = ", ".join(str(m).split(":")[-1].replace("summary_metrics.", "") for m in metrics if m)
    return "\n".join(lines + (textwrap.wrap(shown, 30)[:2] if shown else []))


def draw(spec: dict, out: Path) -> list[str]:
    """Draw the layout into ``out``; the text of every box drawn, in order."""
    ws = spec["workspace"]
    sections = ws["spec"]["section"]["panelBankConfig"]["sections"]
    rows = [(s["name"], s["panels"][i : i + PER_ROW]) for s in sections for i in range(0, len(s["panels"]), PER_ROW)]
    fig, ax = plt.subplots(figsize=(12, 1.0 + 1.6 * len(rows)))
    ax.set_axis_off()
    ax.set_xlim(0, PER_ROW + 1)
    ax.set_ylim(len(rows), -0.8)
    group_by = ", ".join(spec["definition"]["group_by"])  # the filter is the experiment's W&B group, as dashboard.spec
    ax.text(
        0,
        -0.45,
        f"{ws['displayName']}: runs of group {spec['experiment']}, grouped by {group_by}",
        fontsize=12,
        weight="bold",
        va="center",
    )
    texts = []
    for y, (name, panels) in enumerate(rows):
        ax.text(0.02, y + 0.5, "\n".join(textwrap.wrap(name, 16)), fontsize=10, weight="bold", va="center")
        for x, p in enumerate(panels, start=1):
            ax.add_patch(plt.Rectangle((x - 0.05, y + 0.08), 0.95, 0.84, fc="#f3f6fb", ec="#5b7db1"))
            texts.append(panel_text(p))
            ax.text(x + 0.02, y + 0.5, texts[-1], fontsize=8.5, va="center", family="monospace")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return texts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", type=Path, help="the JSON of scripts/dashboard.py --dump")
    p.add_argument("--output", type=Path, default=Path("docs/figures/wandb_workspace.png"))
    args = p.parse_args(argv)
    try:
        spec = json.loads(args.spec.read_text())
        spec["workspace"]["spec"]["section"]["panelBankConfig"]["sections"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        print(
            f"error: {args.spec} is not a spec of scripts/dashboard.py --dump ({e}). Fix: dump it again.",
            file=sys.stderr,
        )
        return 2
    draw(spec, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
