"""The two exception types a user should ever see from normlab.

A ``ConfigError`` carries a single line that says what is wrong and how to fix it.
``train.py`` prints it without a traceback: a typo in a sweep deserves a sentence,
not a stack trace from inside torch. A ``Diverged`` says at which step a run's loss or weights
turned NaN or infinite (exit status 3).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """Bad input or a bad config, with the fix in the message."""


class Diverged(RuntimeError):
    """Training went non-finite; ``step`` is the first training step whose loss, or update, was NaN or inf."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(
            f"training diverged at step {step}: the loss or the weights became NaN or infinite. The run "
            f"was stopped, and checkpoints/ keeps only weights from before that step. Fix: lower "
            f"task.optim.lr, add warm-up (task.optim.warmup) or clipping (trainer.gradient_clip_val=1.0)."
        )


def unknown_name(kind: str, name: str, known: Iterable[str], key: str) -> ConfigError:
    """``unknown norm 'grop' (known: batch, group, ...); did you mean 'group'? Set norm=...``."""
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(
        f"unknown {kind} '{name}' (known: {', '.join(known)}).{hint} Fix: set {key}=<one of the known names>."
    )


def unknown_option(kind: str, name: str, known: Iterable[str], where: str, what: str) -> ConfigError:
    """``unknown trainer option 'max_epoch'. Did you mean 'max_epochs'? ...``: for keys, not values."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown {kind} '{name}' (expected {what}).{hint} Fix: rename or remove {where}.{name}.")
