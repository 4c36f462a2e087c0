"""One training run, from a composed config to a run directory.

``config_check`` -> ``trainer`` (callbacks, loggers) -> the task -> fit and test -> ``summary``,
in ``lifecycle.train``; ``ddp`` starts and stops the other ranks, ``resume`` continues a run.
"""

from normlab.run.lifecycle import train

__all__ = ["train"]
