"""Check a norm against normlab's contract before training with it (docs/norms.md, "Adding a norm").

    python scripts/check_norm.py my_pkg.my_norms.MyNorm            # or a registered name: group
    python scripts/check_norm.py my_pkg.my_norms.MyNorm eps=1e-5   # with knobs, as norm.<knob>=...

Runs the checks the built-in norms' tests run (normlab.run.norm_checks): both layouts or a clear
refusal, shapes and dtypes, training vs eval mode, gradients of gradients, state kept by the
diagnostics; then a fast_dev_run of every task (one batch of train, val and test). Prints one
line per failure and exits 1, or 0 when the norm can be trained with norm=custom.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict

from normlab.norms import supports
from normlab.run import train
from normlab.run.norm_checks import first_line, norm_problems

ROOT = Path(__file__).resolve().parents[1]
# The smallest run of each task: one batch each of train, val and test, on the offline data.
TASKS = {
    "classify": ["task=classify", "model=resnet8", "data.subset=200", "data.batch=8", "data.eval_batch=50"],
    "lm": ["task=lm", "data.batch=4", "data.eval_batch=4", "task.sample.num=1", "task.sample.chars=8"],
    "style": [
        "task=style",
        "model.width=0.25",
        "task.loss.width=0.125",
        "data.crop=16",
        "data.load_size=24",
        "data.eval_size=16",
        "data.style_size=24",
    ],
}


def fast_dev_run(task: str, norm: list[str], out: Path) -> str | None:
    """None if ``task`` trains one batch with the norm, else the reason in one line."""
    overrides = [
        *TASKS[task],
        *norm,
        "debug=fast_dev_run",
        "logger=csv",
        "threads=1",
        "trainer.enable_progress_bar=false",
    ]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir, cfg.paths.output_dir, cfg.paths.cache_dir = str(ROOT), str(out / task), str(out / "cache")
    try:
        summary = train(cfg)
    except Exception as err:  # the run's own one-line ConfigError, or what the layer raised
        return f"{type(err).__name__}: {first_line(err)}"
    return None if summary["status"] == "completed" else f"the run ended {summary['status']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("norm", help="package.module.Class (as norm.target=), or a registered norm name")
    parser.add_argument("knobs", nargs="*", metavar="knob=value", help="the norm's knobs, as norm.<knob>=<value>")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"fast_dev_run these (default: {','.join(TASKS)})")
    args = parser.parse_args(argv)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    try:
        knobs = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(args.knobs)}
        problems = norm_problems(args.norm, knobs)
    except Exception as err:  # a knob Hydra cannot read, or the norm's own one-line ConfigError
        problems = [first_line(err)]
    for line in problems:
        print(f"FAIL {line}")
    if problems:
        return 1
    print(f"ok   {args.norm}: layouts, shapes, dtypes, train/eval, gradients of gradients, diagnostics")
    norm = ["norm=custom", f"norm.target={args.norm}"] if "." in args.norm else [f"norm={args.norm}"]
    norm += [f"++norm.{kv}" for kv in args.knobs]
    failed = 0
    with tempfile.TemporaryDirectory() as out:
        for task in [t for t in args.tasks.split(",") if t]:
            layout = "nlc" if task == "lm" else "nchw"
            if task in TASKS and not supports(args.norm, layout):
                print(f"skip fast_dev_run task={task}: the norm declares no layout {layout}")
                continue
            reason = (
                fast_dev_run(task, norm, Path(out)) if task in TASKS else f"no such task; one of {', '.join(TASKS)}"
            )
            failed += reason is not None
            print(f"FAIL fast_dev_run task={task}: {reason}" if reason else f"ok   fast_dev_run task={task}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
