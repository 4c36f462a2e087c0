"""Where a sweep came from: the train.py command Hydra recorded, and the commits its runs' summaries name.

Hydra writes ``multirun.yaml`` into the sweep directory (and ``.hydra/hydra.yaml`` into each run) with the
overrides of the command line; summary.json records the commit of the checkout that ran (run/summary.py).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

# Said by -m, or a path of the machine that ran it (the page says which directory it is in).
LEFT_OUT = ("hydra.mode=", "hydra.sweep.dir=")


def command(sweep_dir: str | Path) -> str | None:
    """``python train.py -m <overrides>`` as Hydra recorded it; None when the directory has no Hydra record."""
    root = Path(sweep_dir)
    found = [root / "multirun.yaml", *sorted(root.glob("*/.hydra/hydra.yaml"))[:1]]
    for path in found:
        if path.is_file():
            try:
                over = (yaml.safe_load(path.read_text()) or {}).get("hydra", {}).get("overrides", {})
            except yaml.YAMLError:
                continue
            args = [a for a in [*(over.get("task") or []), *(over.get("hydra") or [])] if not a.startswith(LEFT_OUT)]
            return shlex.join(["python", "train.py", "-m", *args])
    return None


def commits(runs: list[dict]) -> list[str]:
    """The distinct commits of the runs, ``<sha> (dirty)`` when tracked files differed from it."""
    seen = []
    for r in runs:
        code = r.get("code") or {}
        if code.get("commit"):
            name = code["commit"][:12] + (" (dirty)" if code.get("dirty") else "")
            seen += [name] if name not in seen else []
    return seen
