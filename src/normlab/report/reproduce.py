"""The experiments behind docs/results*.md as commands: ``python scripts/reproduce.py``.

Each part is a list of steps (sweeps with train.py, then the report); every sweep writes into
``<out>/<name>`` so the report and the next step find it, and the figures are copied to
docs/figures as ``<name>_<figure>.png`` beside ``<name>_results.csv``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from normlab.errors import ConfigError
from normlab.tasks import lr_choice

PARALLEL = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "threads=1"]  # two one-thread jobs on 2 cores


@dataclass(frozen=True)
class Part:
    name: str
    doc: str
    cifar: bool  # trains on CIFAR-10 (a local copy through data.root, or torchvision's download)
    steps: tuple[tuple[str, ...], ...]  # experiments, in order; "{lr_choice}": previous step's choice, "{out}": --out
    extend_edges: bool = False  # the first step is an lr grid: one more rate past each edge winner, then the report


PARTS = {
    p.name: p
    for p in (
        Part(
            "gn_vs_bn",
            "docs/results.md",
            True,
            (("experiment=gn_vs_bn_lr",), ("experiment=gn_vs_bn", "task.optim.lr_choice={lr_choice}")),
        ),
        Part("gn_groups", "docs/results.md", True, (("experiment=gn_groups",),)),
        Part(
            "norms_vision",
            "docs/results.md",
            True,
            (("experiment=norms_vision_lr",), ("experiment=norms_vision", "task.optim.lr_choice={lr_choice}")),
            extend_edges=True,
        ),
        # after norms_vision: its arms for 16 epochs, each at the rate norms_vision_lr chose
        Part(
            "norms_vision_long",
            "docs/results.md",
            True,
            (("experiment=norms_vision_long", "task.optim.lr_choice={out}/norms_vision_lr/lr_choice.yaml"),),
        ),
        Part("norms_zoo", "docs/results.md", True, (("experiment=norms_zoo",),)),
        Part("lm_norms", "docs/results_lm.md", False, (("experiment=lm_norms", "seed=0,1,2"),)),
        # seeds 0-2 for every norm: the docs' two sweeps (seed 0 of all five, seeds 1-2 of three) in one
        Part("style_norms", "docs/results_style.md", False, (("experiment=style_norms", "seed=0,1,2"),)),
    )
}


def sweep_dir(out: Path, step: tuple[str, ...]) -> Path:
    """Where a step's sweep goes: ``<out>/<its experiment>``."""
    return out / step[0].split("=", 1)[1]


def data_args(part: Part, cifar_root: str | None) -> list[str]:
    """A local CIFAR-10 copy for the parts that train on it; none: torchvision's download."""
    return ["data=image_folder", f"data.root={cifar_root}"] if part.cifar and cifar_root else []


def commands(part: Part, out: Path, cifar_root: str | None) -> list[list[str]]:
    """Every command of one part: a sweep per step, each followed by its report."""
    data = data_args(part, cifar_root)
    cmds, previous = [], None
    for step in part.steps:
        sweep = sweep_dir(out, step)
        args = [a.format(out=out, lr_choice=previous / "lr_choice.yaml" if previous else None) for a in step]
        cmds.append(["python", "train.py", "-m", *args, *data, *PARALLEL, f"hydra.sweep.dir={sweep}"])
        cmds.append(["python", "scripts/report.py", str(sweep), "--no-wandb"])
        previous = sweep
    return cmds


def past_edge_commands(sweep: Path, step: tuple[str, ...], data: list[str]) -> list[list[str]]:
    """One run per edge winner of ``sweep``'s lr_choice.csv, one grid step beyond it, into a folder
    of ``sweep`` (the report reads every run below it, so the choice is made again over the wider grid)."""
    choice = pd.read_csv(sweep / "lr_choice.csv")
    return [
        [
            "python",
            "train.py",
            "-m",
            step[0],
            *lr_choice.arm_overrides(arm),
            f"data.batch={batch}",
            f"task.optim.lr={lr:g}",
            *data,
            "threads=1",
            f"hydra.sweep.dir={sweep / 'past_edge' / f'{arm}_b{batch}'}",
        ]
        for arm, batch, lr in lr_choice.past_edges(choice)
    ]


def here(cmd: list[str]) -> list[str]:
    """A printed ``python ...`` command, run with this interpreter (the printed form is what a user types)."""
    return [sys.executable, *cmd[1:]]


def run_two_at_a_time(cmds: list[list[str]]) -> None:
    """Single-run sweeps, two at once on two cores; a failed run is the report's to list."""
    for i in range(0, len(cmds), 2):
        for p in [subprocess.Popen(here(c)) for c in cmds[i : i + 2]]:
            p.wait()


def copy_figures(sweep: Path, figures: Path) -> list[Path]:
    figures.mkdir(parents=True, exist_ok=True)
    copied = []
    for f in [*sweep.glob("*.png"), sweep / "results.csv", sweep / "lr_choice.csv"]:
        if f.exists():
            copied.append(Path(shutil.copy(f, figures / f"{sweep.name}_{f.name}")))
    return copied


def extend(report: list[str], part: Part, out: Path, cifar_root: str | None, dry_run: bool) -> None:
    """Widen the first step's lr grid once past its edge winners, then run its ``report`` again."""
    sweep = sweep_dir(out, part.steps[0])
    print(f"# one more rate past each edge winner of {sweep / 'lr_choice.csv'}, then its report again", flush=True)
    if dry_run:
        return
    cmds = past_edge_commands(sweep, part.steps[0], data_args(part, cifar_root))
    for cmd in cmds:
        print(shlex.join(cmd), flush=True)
    if cmds:
        run_two_at_a_time(cmds)
        subprocess.run(here(report), check=False)


def run(names: list[str], out: Path, cifar_root: str | None, dry_run: bool, figures: Path) -> dict[str, float]:
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ConfigError(f"no part named {', '.join(unknown)}. Fix: --only one of {', '.join(PARTS)}.")
    times = {}
    for name in names:
        part = PARTS[name]
        print(f"# {name} -> {part.doc}", flush=True)
        start = time.time()
        for i, cmd in enumerate(commands(part, out, cifar_root)):
            print(shlex.join(cmd), flush=True)
            if not dry_run:
                # A report exits 1 when a run failed: the sweep is kept and the next part still runs.
                subprocess.run(here(cmd), check=cmd[1] == "train.py")
            if part.extend_edges and i == 1:  # the lr grid's report has chosen: widen it once at its edges
                extend(cmd, part, out, cifar_root, dry_run)
        if not dry_run:
            for step in part.steps:
                copy_figures(sweep_dir(out, step), figures)
            times[name] = time.time() - start
            print(f"# {name}: {times[name] / 60:.1f} min", flush=True)
    return times
