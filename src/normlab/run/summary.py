"""``summary.json``: one file per run that says what ran, how it ended and what it measured.

Written when the run starts (status ``running``) and rewritten when it ends (``completed``,
``failed``, ``interrupted`` (Ctrl-C), or ``diverged`` with the step), always through a temporary file and a rename, so a
kill never leaves half a file. A resumed run keeps its start time and W&B run id, and counts
its resumes. The report reads these files, never the logs.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import traceback
from pathlib import Path

import torch

from normlab import REPO_ROOT
from normlab.atomic import atomic_write


def write_json_atomic(path: Path, data: dict) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2, default=str))


def code_version(root: Path = REPO_ROOT) -> dict | None:
    """The git commit of the normlab checkout that ran, and whether tracked files differed from it.

    A result counts when a committed command reproduces it: this says which code that was.
    None outside a git checkout (an installed wheel) or without git.
    """

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


class RunSummary:
    def __init__(self, run_dir: Path, config: dict, previous: dict | None = None, write: bool = True):
        # write=False: a DDP rank other than 0 keeps its summary in memory; rank 0 writes the file.
        self.path, self.write = Path(run_dir) / "summary.json", write
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()
        self.data = {
            "status": "running",
            "task": config["task"]["name"],
            "model": config["model"]["name"],
            "norm": config["norm"]["name"],
            "data": config["data"]["name"],
            "batch": config["data"]["batch"],
            "seed": config["seed"],
            "experiment": config.get("name"),
            "run_dir": str(self.path.parent.resolve()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            },
            "code": code_version(),
            "config": config,
        }
        if previous:  # resumed: the same run, continued
            self.data.update(
                started=previous.get("started"),
                resumes=previous.get("resumes", 0) + 1,
                resumed=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                wandb_id=previous.get("wandb_id"),
            )
        self._save()

    def _save(self) -> None:
        if self.write:
            write_json_atomic(self.path, self.data)

    def note(self, **fields) -> None:
        """Record something known before the end (the W&B run id), in case the end never comes."""
        self.data.update(fields)
        self._save()

    def finish(self, status: str, metrics: dict | None = None, error: BaseException | None = None, **extra) -> dict:
        self.data.update(status=status, metrics=metrics or {}, wall_time_s=round(time.time() - self.t0, 2), **extra)
        if error is not None:
            self.data["error"] = f"{type(error).__name__}: {error}"
            self.data["traceback"] = "".join(traceback.format_exception(error))[-4000:]
        self._save()
        return self.data
