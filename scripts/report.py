"""Tables and figures of a sweep.

    python scripts/report.py logs/multiruns/<timestamp>            # a multirun directory
    python scripts/report.py --wandb entity/project --group gn_vs_bn --out reports/gn_vs_bn

Writes results.csv, runs.csv, results.md and PNG figures (error vs batch size, training curves,
BatchNorm's eval-mode vs batch-statistics vs PreciseBN error) into the sweep directory (or
--out), and logs them to W&B (offline unless the runs were online; --no-wandb to skip).
It also writes index.html, one page that works offline (plotly inline; needs pip install -e '.[html]');
--serve serves the directory over HTTP after writing, for a remote machine.
Exit status 1 if any run failed or was unreadable, so scripts notice.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys

from normlab.report import collect_wandb, report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", nargs="?", help="directory holding the runs' summary.json files")
    parser.add_argument("--out", help="where to write (default: the sweep directory)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead (online)")
    parser.add_argument("--group", help="the W&B group (experiment name) to read, with --wandb")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B")
    parser.add_argument("--serve", action="store_true", help="then serve the directory over HTTP (port --port)")
    parser.add_argument("--port", type=int, default=8000, help="the port of --serve")
    return parser


def serve(directory: str, port: int) -> None:
    """index.html and the figures over HTTP until Ctrl-C (a remote machine: forward the port)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    with http.server.ThreadingHTTPServer(("", port), handler) as httpd:
        print(f"serving {directory} at http://localhost:{port}/index.html (Ctrl-C stops)", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.wandb) == bool(args.sweep_dir) or (args.wandb and not (args.group and args.out)):
        parser.error("give a sweep directory, or --wandb ENTITY/PROJECT --group NAME --out DIR")
    runs = collect_wandb(args.wandb, args.group) if args.wandb else None
    result = report(args.sweep_dir or args.out, args.out, runs=runs, log_wandb=not args.no_wandb, title=args.group)
    print(result.markdown)
    print("wrote: " + ", ".join(str(f) for f in result.files))
    if args.serve:
        serve(str(args.out or args.sweep_dir), args.port)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
