"""``summary.json``: one file per run that says what ran, how it ended and what it measured.

Written when the run starts (status ``running``) and rewritten when it ends (``completed`` or
``failed``), always through a temporary file and a rename, so a kill never leaves half a file.
The report reads these files, never the logs.
"""

from __future__ import annotations

import json
import os
import platform
import time
import traceback
from pathlib import Path

import torch


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


class RunSummary:
    def __init__(self, run_dir: Path, config: dict):
        self.path = Path(run_dir) / "summary.json"
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
            "run_dir": str(self.path.parent),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                        "threads": torch.get_num_threads()},
            "config": config,
        }
        write_json_atomic(self.path, self.data)

    def finish(self, status: str, metrics: dict | None = None, error: BaseException | None = None, **extra) -> dict:
        self.data.update(status=status, metrics=metrics or {}, wall_time_s=round(time.time() - self.t0, 2), **extra)
        if error is not None:
            self.data["error"] = f"{type(error).__name__}: {error}"
            self.data["traceback"] = "".join(traceback.format_exception(error))[-4000:]
        write_json_atomic(self.path, self.data)
        return self.data
