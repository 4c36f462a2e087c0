"""Run every experiment behind docs/results*.md and regenerate their tables and figures.

    python scripts/reproduce.py --dry-run                        # print every command
    python scripts/reproduce.py --only gn_vs_bn --cifar-root data/cifar10-jpeg
    python scripts/reproduce.py                                  # all parts (hours on 2 cores)

CIFAR-10 comes from torchvision's download, or from a local JPEG copy with --cifar-root. Each
sweep writes into --out/<experiment>, its report (results.md, results.csv, figures) beside it,
and the figures and tables are copied to docs/figures. The wall time of every part is printed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from normlab.errors import ConfigError
from normlab.report.reproduce import PARTS, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="PART", default=list(PARTS), help=f"of: {', '.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=Path("logs/reproduce"), help="where the sweeps go")
    parser.add_argument("--cifar-root", help="a local CIFAR-10 tree root/{train,test}/<class>/*.jpg")
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"), help="where figures are copied")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        run(args.only, args.out, args.cifar_root, args.dry_run, args.figures)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print(
            f"error: a sweep failed (exit {err.returncode}): {' '.join(err.cmd)}. Its runs' summary.json files "
            f"say why; scripts/report.py on its directory lists them.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
