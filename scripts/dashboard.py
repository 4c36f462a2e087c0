"""A saved W&B workspace view and a W&B report for one experiment, built by code.

    python scripts/dashboard.py --entity E --project P --experiment gn_vs_bn                   # what it would create
    python scripts/dashboard.py --entity E --project P --experiment gn_vs_bn --dump spec.json  # and its spec, as JSON
    python scripts/dashboard.py --entity E --project P --experiment gn_vs_bn --save            # create both

Without --save, or without a W&B login, it prints in one line what it would create and touches no
network. Needs wandb-workspaces: pip install -e '.[dashboard]'. See docs/dashboards.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from normlab import dashboard as dash
from normlab.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entity", required=True, help="the W&B entity (user or team) of the runs")
    parser.add_argument("--project", required=True, help="the W&B project of the runs (logger.wandb.project)")
    parser.add_argument("--experiment", required=True, help=f"one of: {', '.join(dash.DASHBOARDS)}")
    parser.add_argument("--dump", type=Path, metavar="SPEC.json", help="write the workspace and report spec as JSON")
    parser.add_argument("--save", action="store_true", help="create the workspace and the report in W&B (network)")
    args = parser.parse_args(argv)
    try:
        d, workspace, report = dash.build(args.experiment, args.entity, args.project)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dump:
        args.dump.write_text(json.dumps(dash.to_spec(d, workspace, report), indent=2) + "\n")
    offline = dash.logged_in() if args.save else "no --save"
    if offline:
        dumped = f"; spec: {args.dump}" if args.dump else ""
        print(f"{dash.plan(d, workspace, report)}; not saved ({offline}){dumped}")
        return 0
    workspace_url, report_url = dash.save(workspace, report)
    print(f"saved workspace {workspace_url} and report {report_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
