"""Serialize a workspace and a report without the network, save them with it, and say what would be saved.

``to_spec`` is what ``scripts/dashboard.py --dump`` writes and the tests read: the models wandb-workspaces
sends when saving (``_to_model()``, dumped by alias as W&B stores them). A report's run sets look up their
project's internal id on the server when serialized, so the offline dump serializes copies of them without
entity and project (those are kept at the report's top level, ``project``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from netrc import NetrcParseError, netrc
from pathlib import Path
from urllib.parse import urlparse

from normlab.dashboard.definitions import Dashboard
from normlab.dashboard.lib import workspaces


def _dump(model) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _with(obj, **fields):
    """A shallow copy of a wandb-workspaces object with some fields changed (its private ids kept)."""
    out = copy.copy(obj)
    for k, v in fields.items():
        object.__setattr__(out, k, v)
    return out


def offline_report_model(report):
    """The report's model, its run sets serialized without entity and project (no project-id lookup)."""
    wr = workspaces().wr
    blocks = [
        _with(b, runsets=[_with(rs, entity="", project="") for rs in b.runsets]) if isinstance(b, wr.PanelGrid) else b
        for b in report.blocks
    ]
    return _with(report, blocks=blocks)._to_model()


def to_spec(d: Dashboard, workspace, report) -> dict:
    """``{"experiment", "definition", "workspace", "report"}``: plain JSON."""
    return {
        "experiment": d.experiment,
        "definition": dataclasses.asdict(d) | {"group_by": list(d.group_by)},
        "workspace": _dump(workspace._to_model()),
        "report": _dump(offline_report_model(report)),
    }


def plan(d: Dashboard, workspace, report) -> str:
    """One line: what ``save`` would create, and where."""
    panels = sum(len(s.panels) for s in workspace.sections)
    return (
        f"would create in {workspace.entity}/{workspace.project}: workspace '{workspace.name}' "
        f"({len(workspace.sections)} sections, {panels} panels; runs of group {d.experiment} grouped by "
        f"{', '.join(d.group_by)}) and report '{report.title}' ({len(report.blocks)} blocks)"
    )


def logged_in() -> str | None:
    """None if W&B can be reached with a key, else why not; reads the environment and ~/.netrc only."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']}"
    if os.environ.get("WANDB_API_KEY"):
        return None
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        if path.exists() and netrc(path).authenticators(host):
            return None
    except (OSError, NetrcParseError):  # an unreadable netrc is no login
        pass
    return f"no W&B login for {host}"


def save(workspace, report) -> tuple[str, str]:
    """Create both in W&B (the network call); returns their URLs."""
    workspace.save()
    report.save()
    return workspace.url, report.url
