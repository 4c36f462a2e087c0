"""W&B dashboards built by code: a saved workspace view and a report per experiment.

    python scripts/dashboard.py --entity E --project P --experiment gn_vs_bn          # prints what it would create
    python scripts/dashboard.py --entity E --project P --experiment gn_vs_bn --save   # creates both (wandb login)

``definitions.py`` holds one definition per experiment of conf/experiment/ (its question, arms and panel kinds),
``panels.py`` the panels of each kind, ``workspace.py`` and ``report.py`` the two W&B objects, ``spec.py`` their
offline serialization and ``save``, the only call that needs the network. wandb-workspaces is optional
(``pip install -e '.[dashboard]'``) and imported on first use.
"""

from __future__ import annotations

from normlab.dashboard.definitions import DASHBOARDS, Dashboard, dashboard
from normlab.dashboard.report import build_report
from normlab.dashboard.spec import logged_in, plan, save, to_spec
from normlab.dashboard.workspace import build_workspace


def build(experiment: str, entity: str, project: str):
    """``(definition, workspace, report)`` of one experiment, built offline."""
    d = dashboard(experiment)
    return d, build_workspace(d, entity, project), build_report(d, entity, project)


__all__ = [
    "DASHBOARDS",
    "Dashboard",
    "build",
    "build_report",
    "build_workspace",
    "dashboard",
    "logged_in",
    "plan",
    "save",
    "to_spec",
]
