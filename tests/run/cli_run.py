"""Run one of normlab's scripts as a user types it: a fresh process, W&B offline, Hydra's short errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """``python <script> <args>`` from the repository root; ``env`` adds variables to the process.

    ``timeout`` in seconds, for a process that trains: generous, the test machine may be busy."""
    full_env = dict(os.environ, WANDB_MODE="offline", HYDRA_FULL_ERROR="0", **env)
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python train.py <args>``."""
    return run_script("train.py", *args, timeout=timeout)
