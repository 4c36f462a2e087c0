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

from normlab.errors import ConfigError

PARALLEL = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "threads=1"]  # two one-thread jobs on 2 cores


@dataclass(frozen=True)
class Part:
    name: str
    doc: str
    cifar: bool  # trains on CIFAR-10 (a local copy through data.root, or torchvision's download)
    steps: tuple[tuple[str, ...], ...]  # experiments, in order; "{lr_choice}" is the previous step's choice


PARTS = {
    p.name: p for p in (
        Part("gn_vs_bn", "docs/results.md", True, (("experiment=gn_vs_bn_lr",),
                                                   ("experiment=gn_vs_bn", "task.optim.lr_choice={lr_choice}"))),
        Part("gn_groups", "docs/results.md", True, (("experiment=gn_groups",),)),
        Part("norms_vision", "docs/results.md", True,
             (("experiment=norms_vision_lr",), ("experiment=norms_vision", "task.optim.lr_choice={lr_choice}"))),
        Part("norms_zoo", "docs/results.md", True, (("experiment=norms_zoo",),)),
        Part("lm_norms", "docs/results_lm.md", False, (("experiment=lm_norms", "seed=0,1,2"),)),
        Part("style_norms", "docs/results_style.md", False, (("experiment=style_norms",),)),
    )
}


def commands(part: Part, out: Path, cifar_root: str | None) -> list[list[str]]:
    """Every command of one part: a sweep per step, each followed by its report."""
    data = ["data=image_folder", f"data.root={cifar_root}"] if part.cifar and cifar_root else []
    cmds, previous = [], None
    for step in part.steps:
        sweep = out / step[0].split("=", 1)[1]
        args = [a.format(lr_choice=previous / "lr_choice.yaml") if previous else a for a in step]
        cmds.append(["python", "train.py", "-m", *args, *data, *PARALLEL, f"hydra.sweep.dir={sweep}"])
        cmds.append(["python", "scripts/report.py", str(sweep), "--no-wandb"])
        previous = sweep
    return cmds


def copy_figures(sweep: Path, figures: Path) -> list[Path]:
    figures.mkdir(parents=True, exist_ok=True)
    copied = []
    for f in [*sweep.glob("*.png"), sweep / "results.csv", sweep / "lr_choice.csv"]:
        if f.exists():
            copied.append(Path(shutil.copy(f, figures / f"{sweep.name}_{f.name}")))
    return copied


def run(names: list[str], out: Path, cifar_root: str | None, dry_run: bool, figures: Path) -> dict[str, float]:
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ConfigError(f"no part named {', '.join(unknown)}. Fix: --only one of {', '.join(PARTS)}.")
    times = {}
    for name in names:
        part = PARTS[name]
        print(f"# {name} -> {part.doc}", flush=True)
        start = time.time()
        for cmd in commands(part, out, cifar_root):
            print(shlex.join(cmd), flush=True)
            if not dry_run:
                # A report exits 1 when a run failed: the sweep is kept and the next part still runs.
                subprocess.run([sys.executable, *cmd[1:]], check=cmd[1] == "train.py")
        if not dry_run:
            for step in part.steps:
                copy_figures(out / step[0].split("=", 1)[1], figures)
            times[name] = time.time() - start
            print(f"# {name}: {times[name] / 60:.1f} min", flush=True)
    return times
