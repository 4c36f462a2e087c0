"""A screenshot of a sweep's index.html with headless Chromium, for the docs.

python scripts/report.py logs/multiruns/<sweep> --no-wandb
python scripts/screenshot_html.py logs/multiruns/<sweep>/index.html --output docs/figures/offline_dashboard.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path, help="the index.html to render")
    p.add_argument("--output", default="docs/figures/offline_dashboard.png")
    p.add_argument("--size", default="1280,1800", help="window width,height in pixels")
    args = p.parse_args(argv)
    exe = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if exe is None:
        print("error: no Chromium found. Fix: apt-get install chromium", file=sys.stderr)
        return 2
    if not args.page.is_file():
        print(f"error: {args.page} not found. Fix: run scripts/report.py on the sweep first.", file=sys.stderr)
        return 2
    out = Path(args.output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            exe,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={args.size}",
            "--virtual-time-budget=5000",
            f"--screenshot={out}",
            args.page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
