"""wandb-workspaces, imported only when a dashboard is built: an optional dependency (``.[dashboard]``)."""

from __future__ import annotations

from types import SimpleNamespace

from normlab.errors import ConfigError


def workspaces() -> SimpleNamespace:
    """``.ws`` (workspaces), ``.wr`` (reports v2) and ``.expr`` (filters) of wandb-workspaces."""
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
        from wandb_workspaces import expr
    except ImportError as err:
        raise ConfigError(
            "W&B workspaces and reports need the wandb-workspaces package, which is not installed. "
            "Fix: pip install -e '.[dashboard]' (or pip install wandb-workspaces)."
        ) from err
    return SimpleNamespace(ws=ws, wr=wr, expr=expr)
