"""The saved W&B workspace view of one experiment: its runs, grouped by arm (and batch), one section per panel kind."""

from __future__ import annotations

from normlab.dashboard.definitions import Dashboard
from normlab.dashboard.lib import workspaces
from normlab.dashboard.panels import TITLES, headline, kind_panels

MAX_GROUPS = 100  # W&B shows the first 10 runs or groups by default; a sweep has up to 45 groups


def run_filters(expr, d: Dashboard) -> list:
    """The experiment's training runs: its W&B group (logger.wandb.group = name) and the flat config key
    ``experiment``, which the report run that scripts/report.py logs into the same group does not have."""
    return [expr.Metric("Group") == d.experiment, expr.Config("experiment") == d.experiment]


def config_column(key: str) -> str:
    """The runs-table column of a config key, nested as W&B addresses it: ``model.ws`` -> ``config:model.value.ws``."""
    name, *rest = key.split(".")
    return f"config:{name}.value" + "".join(f".{r}" for r in rest)


def build_workspace(d: Dashboard, entity: str, project: str):
    lib = workspaces()
    ws, expr = lib.ws, lib.expr
    sections = [ws.Section(name=TITLES[kind], panels=kind_panels(d, kind), is_open=True) for kind in d.panels]
    return ws.Workspace(
        entity=entity,
        project=project,
        name=f"normlab: {d.experiment}",
        sections=sections,
        settings=ws.WorkspaceSettings(max_runs=MAX_GROUPS),
        runset_settings=ws.RunsetSettings(
            filters=run_filters(expr, d),
            groupby=[expr.Config(k) for k in d.group_by],
            pinned_columns=[config_column(k) for k in d.group_by] + [f"summary:{s}" for s in _summaries(d)],
        ),
    )


def _summaries(d: Dashboard) -> list[str]:
    return list(dict.fromkeys([headline(d), "val/err.min" if d.task == "classify" else "val/loss.min"]))
