"""Lightning DDP under Hydra: N processes train one config, and rank 0 alone writes the run.

Lightning's DDP launcher starts ranks 1..N-1 by running the main script again with
``LOCAL_RANK`` set; under Hydra it adds ``hydra.run.dir=<run dir>`` to the command line. Inside
a multirun that command line is the whole sweep (``-m`` and its lists), so every extra rank
would start a sweep of its own, into new directories, with summaries and W&B runs of its own;
in a joblib or Ray worker the main script is the worker's, not train.py. And a process that ran
one DDP job keeps ``LOCAL_RANK`` and its process group, so the next job of a sweep would not
start its ranks at all. So:

- Rank 0 hands its resolved config to the ranks it starts (``NORMLAB_RANK_CONFIG``, in their
  environment). train.py sees it and trains that config without Hydra: no directory, log file,
  summary or W&B run of its own. Lightning writes checkpoints and logs on rank 0 only; normlab's
  summary.json and CSV bookkeeping follow ``is_rank_zero``.
- After the job, the launching process waits for its ranks, destroys the process group and
  restores its environment, so the next job of a sweep starts ranks of its own.
- A DDP run is refused where Lightning cannot start ranks by running train.py again (a joblib
  or Ray worker, ``train()`` called from Python), and so are the strategies that run every rank,
  rank 0 too, in a process that ends with ``fit`` (``ddp_spawn``, ``ddp_fork``).
- Processes started by SLURM (srun, ``hydra/launcher=slurm``) or torchrun come with their rank:
  nothing is launched, and rank 0 is the process whose ``RANK`` or ``SLURM_PROCID`` is 0.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable
from contextlib import contextmanager

import torch
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf

from normlab.errors import ConfigError, Diverged

log = logging.getLogger(__name__)

CONFIG_ENV = "NORMLAB_RANK_CONFIG"
# What a launching process's environment gains during a DDP job: Lightning sets all but the last
# (LOCAL_RANK would make the next job of a sweep believe it is a started rank), normlab the last.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS", CONFIG_ENV)
WAIT_S = 60  # for the started ranks to exit after the job: they finish testing together with rank 0

_entry_point = False


def mark_entry_point() -> None:
    """train.py is the main script: Lightning may start ranks by running it again."""
    global _entry_point
    _entry_point = True


def is_rank_zero() -> bool:
    """Whether this process writes the run (summary.json, CSV bookkeeping), from the environment
    its launcher gave it: known before Lightning sets up the process group."""
    env = os.environ
    node = env.get("NODE_RANK", env.get("GROUP_RANK", "0"))
    if "RANK" in env:  # torchrun
        return env["RANK"] == "0"
    if "LOCAL_RANK" in env:  # Lightning's launcher, and the ranks it started
        return env["LOCAL_RANK"] == "0" and node == "0"
    if "SLURM_PROCID" in env:  # srun: one task per device
        return env["SLURM_PROCID"] == "0"
    return node == "0"


def handed_over() -> dict | None:
    """The config rank 0 handed to this process, if Lightning started it as a rank > 0."""
    text = os.environ.get(CONFIG_ENV)
    if not text or os.environ.get("LOCAL_RANK", "0") == "0":
        return None
    return json.loads(text)


def _peer_gone(err: BaseException) -> bool:
    # gloo says so in a RuntimeError; NCCL raises DistBackendError once its timeout passes.
    dist_error = getattr(torch.distributed, "DistError", ())
    return isinstance(err, dist_error) or "closed by peer" in str(err) or "reset by peer" in str(err)


def run_rank(config: dict, train: Callable[[DictConfig], dict]) -> int:
    """Train rank 0's config with ``train`` (``normlab.run.train``) as a started rank; the process's exit status.

    An error every rank meets together (a divergence: ``DivergenceGuard`` reduces over ranks; a
    config error) and a rank 0 that stopped are rank 0's to record: exit 0. Anything else is
    this rank's own failure: a non-zero exit, on which Lightning stops rank 0 too (it would wait
    for this rank forever).
    """
    try:
        train(OmegaConf.create(config))
    except (Diverged, ConfigError) as err:
        log.info("rank %s stopped with the others: %s", os.environ.get("LOCAL_RANK"), err)
    except Exception as err:
        if not _peer_gone(err):
            raise
        log.warning("rank %s stopped: rank 0 left the process group (%s)", os.environ.get("LOCAL_RANK"), err)
    return 0


def _launcher_types():
    return _MultiProcessingLauncher, _SubprocessScriptLauncher


def launches_ranks(trainer) -> bool:
    """Whether ``fit`` will start the other ranks by running the main script again (Lightning's DDP)."""
    _, script = _launcher_types()
    launcher = trainer.strategy.launcher
    return isinstance(launcher, script) and not trainer.strategy.cluster_environment.creates_processes_externally


def check_launch(trainer, strategy: str) -> None:
    spawn, _ = _launcher_types()
    if isinstance(trainer.strategy.launcher, spawn):
        raise ConfigError(
            f"trainer.strategy={strategy} runs every rank, rank 0 too, in a new process that ends with "
            f"fit, so the run's summary, W&B run and test would be written from the wrong process. "
            f"Fix: use trainer.strategy=ddp (trainer=ddp on GPUs, trainer=ddp_cpu on CPUs)."
        )
    if launches_ranks(trainer) and not _entry_point:
        raise ConfigError(
            f"trainer.strategy={strategy} starts its other {trainer.world_size - 1} rank(s) by running "
            f"the main script again, and this process's main script is not train.py (a "
            f"hydra/launcher=joblib or ray worker, or train() called from Python). Fix: start DDP runs "
            f"with python train.py, without a parallel launcher (sweep jobs then run one after "
            f"another, each on all devices), or on SLURM with hydra/launcher=slurm, which starts the "
            f"ranks itself."
        )


@contextmanager
def ranks(trainer, config: dict, threads: int | None):
    """Around fit and test: hand ``config`` to the ranks that ``fit`` starts; stop and forget them after."""
    if not launches_ranks(trainer):
        yield
        return
    saved = {key: os.environ.get(key) for key in LAUNCH_ENV}
    os.environ[CONFIG_ENV] = json.dumps(config)
    if threads:  # else Lightning gives each rank cores / ranks threads
        os.environ["OMP_NUM_THREADS"] = str(threads)
    ok = False
    try:
        yield
        ok = True
    finally:
        _stop(trainer.strategy.launcher.procs, ok)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stop(procs: list, ok: bool) -> None:
    # After a success the ranks exit on their own: wait, then drop the group. After a failure of
    # rank 0 the others may wait in a collective: dropping the group first ends it for them.
    if ok:
        _wait(procs)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if not ok:
        _wait(procs)


def _wait(procs: list) -> None:
    for proc in procs:
        try:
            proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            # Not killed: Lightning's observer would take a killed rank for a crash and kill this process too.
            log.warning(
                "rank process %d still runs %d s after the job; it stops when its collective times out",
                proc.pid,
                WAIT_S,
            )
