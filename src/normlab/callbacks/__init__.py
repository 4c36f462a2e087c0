"""Lightning callbacks (and the two plugins) a run's Trainer is built with.

Run state (``run_state``, ``throughput``), safety (``divergence``, ``checkpoints``), several
processes (``rank_sync``, ``layer_sync``) and what batch statistics do (``norm_stats``).
"""

from normlab.callbacks.checkpoints import AtomicCheckpointIO, LastCheckpoint, checkpoint_callbacks
from normlab.callbacks.divergence import DivergenceGuard
from normlab.callbacks.layer_sync import SyncBatchNormPlugin, sync_plugin
from normlab.callbacks.norm_stats import BatchStatDiagnostics, EpochAverages, MixingWeights, PreciseBN
from normlab.callbacks.rank_sync import RanksInSync, several_processes
from normlab.callbacks.run_state import ResumeState
from normlab.callbacks.throughput import Throughput

__all__ = [
    "AtomicCheckpointIO",
    "BatchStatDiagnostics",
    "DivergenceGuard",
    "EpochAverages",
    "LastCheckpoint",
    "MixingWeights",
    "PreciseBN",
    "RanksInSync",
    "ResumeState",
    "SyncBatchNormPlugin",
    "Throughput",
    "checkpoint_callbacks",
    "several_processes",
    "sync_plugin",
]
