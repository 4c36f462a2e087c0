"""Training steps per second through normlab's Lightning path, against a hand-written PyTorch loop.

For each configuration (task, norm, batch size), in one process, ``repeats`` runs of
``steps`` training steps of both, in turn, step by step:

- ``normlab``: what ``python train.py`` runs: loggers, the Trainer with normlab's callbacks and
  progress bar, the LightningModule with its metrics, ``fit``;
- ``hand``: the same model (same seed), data, augmentation, optimizer, schedule and gradient
  clipping in a plain loop: next batch, augment, forward, loss, zero_grad, backward, step.
  Nothing else. One of its steps runs at the start of each normlab step, from the
  LightningModule's ``on_train_batch_start``, and is timed on its own.

Step by step, because a shared virtual machine's speed drifts by a third over seconds: two
loops run one after the other, a few seconds each, measured that drift as often as the
difference between them (ratios of 0.8-1.6 between repeats, 2026-11-29). A normlab step runs
from the end of a hand step to the start of the next, so it holds everything the Lightning
path does between steps (data, augmentation, forward, backward, optimizer, callbacks,
logging). A run's figure is each loop's median step after ``warmup`` steps; the ratio normlab /
hand is taken per run, then its median over the runs. ``cpu`` ratios use process time.

    python scripts/bench_train.py threads=1        # ResNet-20, BN and GN, batch 2, 8, 32; and task=lm
    python scripts/bench_train.py --quick          # a few steps of each: a smoke test

Runs log to CSV (``logger=csv``) unless a ``logger=`` override says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict

from normlab import REPO_ROOT
from normlab.bench.report import fmt, markdown, median, warn_if_busy, write_report
from normlab.errors import ConfigError
from normlab.run.config_check import check_config
from normlab.run.host_memory import keep_freed_memory_if_asked
from normlab.run.loggers import build_loggers, finish_wandb
from normlab.run.trainer import build_trainer
from normlab.tasks import build_task

CONF = REPO_ROOT / "conf"
DEFAULT_THREADS = torch.get_num_threads()
RESNET_TARGET = 1.15  # normlab's step at batch 2 on the default ResNet: at most this many hand-written steps


class Clock:
    """Wall and process time at marked instants."""

    def __init__(self, sync=lambda: None):
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.sync = sync

    def tick(self) -> None:
        self.sync()  # on a GPU, a step's time is its kernels' too
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())


def paired_steps(hand: Clock, normlab: Clock, warmup: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median seconds per step (wall, cpu) of each loop, after ``warmup`` steps: ``hand`` ticks
    before each hand-written step and ``normlab`` after it, so a hand step runs from a ``hand``
    tick to the next ``normlab`` one, and a normlab step from there to the next ``hand`` tick."""

    def per_step(starts, ends, nxt):
        return (
            median(b - a for a, b in zip(starts[warmup:], ends[warmup:]))
            if nxt is None
            else median(b - a for a, b in zip(ends[warmup:], nxt[warmup + 1 :]))
        )

    return (
        (per_step(hand.wall, normlab.wall, None), per_step(hand.cpu, normlab.cpu, None)),
        (per_step(None, normlab.wall, hand.wall), per_step(None, normlab.cpu, hand.cpu)),
    )


@dataclass
class Schedule:
    """What ``configure_optimizers`` reads from a Trainer, for a loop without one."""

    estimated_stepping_batches: int
    gradient_clip_val: float | None
    precision: str


@dataclass
class Result:
    label: str
    task: str
    norm: str
    batch: int
    steps: int
    hand: list[tuple[float, float]] = field(default_factory=list)  # (wall, cpu) seconds per step, per repeat
    normlab: list[tuple[float, float]] = field(default_factory=list)

    def ratios(self, i: int) -> list[float]:
        return [n[i] / h[i] for h, n in zip(self.hand, self.normlab)]


def compose(overrides: list[str], run_dir: str) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = run_dir
    return cfg


def device_of(cfg: DictConfig) -> tuple[torch.device, contextlib.AbstractContextManager]:
    """The device and autocast context the Trainer of ``cfg`` uses, for the hand-written loop."""
    if cfg.trainer.get("devices", 1) not in (1, "1") or cfg.trainer.get("num_nodes", 1) != 1:
        raise ConfigError("the training benchmark times one device. Fix: leave trainer.devices at 1 (no trainer=ddp).")
    accelerator = cfg.trainer.accelerator
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    precision = str(cfg.trainer.precision)
    if precision not in ("32-true", "32", "bf16-mixed"):
        raise ConfigError(f"trainer.precision={precision} in the training benchmark. Fix: use 32-true or bf16-mixed.")
    bf16 = precision == "bf16-mixed"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    return device, autocast


def endless(loader):
    while True:
        yield from loader


class HandLoop:
    """The same model, data and optimizer as ``cfg``'s run, stepped by the plainest PyTorch loop:
    next batch, augment, forward, loss, zero_grad, backward, clip, step."""

    def __init__(self, cfg: DictConfig):
        L.seed_everything(cfg.seed, verbose=False)
        module, self.data = build_task(cfg, 1)
        self.device, self.autocast = device_of(cfg)
        self.model = module.model.to(self.device).train()
        module.trainer = Schedule(
            cfg.trainer.max_steps, cfg.trainer.get("gradient_clip_val"), str(cfg.trainer.precision)
        )
        optimizers = module.configure_optimizers()
        module.trainer = None
        self.opt, self.sched = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
        self.clip = cfg.trainer.get("gradient_clip_val")
        if cfg.trainer.get("compile", False):
            self.model = torch.compile(self.model)
        self.images = cfg.task.name == "classify"
        self.batches = endless(self.data.train_dataloader())

    def step(self) -> None:
        x, y = (t.to(self.device, non_blocking=True) for t in next(self.batches))
        if self.images:
            x, y = self.data.prepare((x, y), train=True)  # crop, flip, standardize: what the Lightning path does
        with self.autocast:
            logits = self.model(x)  # (N, classes), or (B, T, vocab) for text
            if self.images:
                loss = F.cross_entropy(logits, y)
            else:
                loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.sched.step()


def paired_run(cfg: DictConfig, hand: Clock, normlab: Clock) -> None:
    """What ``normlab.run.train`` does up to the end of ``fit`` (no test): loggers, Trainer, task,
    fit; with one step of ``HandLoop`` before each of its steps, so that both loops see the
    machine in the same state (on a shared VM its speed drifts by a third over seconds)."""
    check_config(cfg)
    loop = HandLoop(cfg)  # seeded as the run is: the same initial model
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.paths.output_dir)
    loggers = build_loggers(OmegaConf.to_container(cfg, resolve=True), run_dir)
    try:
        trainer = build_trainer(cfg, run_dir, loggers)
        module, data = build_task(cfg, trainer.world_size)

        # The LightningModule's own hook, called once per step (a callback would add Lightning's
        # per-callback dispatch at every hook to normlab's side of the comparison): a hand step,
        # then normlab's, whose time runs from here to the next call.
        def hand_step_first(batch, batch_idx):
            hand.tick()
            loop.step()
            normlab.tick()

        module.on_train_batch_start = hand_step_first
        if cfg.trainer.get("compile", False):
            module.model = torch.compile(module.model)
        trainer.fit(module, datamodule=data)
    finally:
        finish_wandb(failed=False)


@contextlib.contextmanager
def quiet():
    """Lightning's banners, warnings and progress bar off the terminal (to /dev/null, as in a sweep's log)."""
    levels = {name: logging.getLogger(name).level for name in ("lightning", "lightning.pytorch", "lightning.fabric")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.ERROR)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def bench(label: str, overrides: list[str], steps: int, repeats: int, warmup: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        base = compose(overrides, tmp)
        result = Result(label, base.task.name, base.norm.name, base.data.batch, steps)
        torch.set_num_threads(base.get("threads") or DEFAULT_THREADS)  # as run.train: both loops, the run's threads
        keep_freed_memory_if_asked(base)  # as run.train, for both loops
        for r in range(repeats):
            cfg = compose(
                [*overrides, f"trainer.max_steps={steps}", "trainer.max_epochs=1000"], str(Path(tmp) / f"{r}")
            )
            sync = torch.cuda.synchronize if device_of(cfg)[0].type == "cuda" else (lambda: None)
            hand, normlab = Clock(sync), Clock(sync)
            with quiet():
                paired_run(cfg, hand, normlab)
            h_step, n_step = paired_steps(hand, normlab, warmup)
            result.hand.append(h_step)
            result.normlab.append(n_step)
            h, n = h_step[0], n_step[0]
            print(
                f"  {label:28s} repeat {r + 1}/{repeats}: hand {1e3 * h:7.2f} ms  normlab {1e3 * n:7.2f} ms  "
                f"ratio {n / h:.3f}",
                flush=True,
            )
    return result


def table(results: list[Result]) -> str:
    rows = []
    for r in results:
        wall, cpu = r.ratios(0), r.ratios(1)
        rows.append(
            [
                r.label,
                r.norm,
                r.batch,
                r.steps,
                len(r.hand),
                fmt(1 / median(h[0] for h in r.hand), 1),
                fmt(1 / median(n[0] for n in r.normlab), 1),
                fmt(median(wall), 3),
                f"{fmt(min(wall), 3)}-{fmt(max(wall), 3)}",
                fmt(median(cpu), 3),
            ]
        )
    return markdown(
        [
            "config",
            "norm",
            "batch",
            "steps",
            "repeats",
            "hand steps/s",
            "normlab steps/s",
            "normlab / hand",
            "range",
            "cpu ratio",
        ],
        rows,
    )


def configs(args: argparse.Namespace) -> list[tuple[str, list[str], int, int]]:
    """(label, overrides, steps, repeats) of every configuration to time.

    Runs of a few seconds at any batch size; seven repeats where the target is (batch 2), three
    elsewhere, so that the whole benchmark stays under five minutes on two CPU cores. At batch 2
    the ratio moves more between runs (0.8-1.7 over five repeats of 200 steps, 2026-11-29) than
    within one, so more and shorter runs.
    """
    out = []
    for norm in args.norms:
        for batch in args.batches:
            steps = args.steps or max(25, 200 // batch)
            repeats = args.repeats or (7 if batch <= 2 else 3)
            out.append(
                (f"resnet20 {norm} b{batch}", [f"norm={norm}", f"data.batch={batch}", *args.overrides], steps, repeats)
            )
    if args.lm:
        lm = ["task=lm", *args.overrides]
        if args.quick:
            lm += ["model.n_layer=1", "model.n_embd=32", "model.block_size=32"]
        out.append(("gpt (task=lm)", lm, args.steps or 40, args.repeats or 3))
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer=gpu or threads=1")
    p.add_argument("--norms", nargs="+", default=None, help="default: batch group")
    p.add_argument("--batches", nargs="+", type=int, default=None, help="images per step (default: 2 8 32)")
    p.add_argument("--steps", type=int, default=None, help="steps per run (default: 200 / batch, at least 25; LM 40)")
    p.add_argument(
        "--repeats", type=int, default=None, help="runs of each loop per configuration (default: 7 at batch 2, else 3)"
    )
    p.add_argument("--warmup", type=int, default=None, help="steps left out of each run's median (default 10)")
    p.add_argument("--lm", action=argparse.BooleanOptionalAction, default=True, help="also time task=lm (default: on)")
    p.add_argument("--quick", action="store_true", help="batch 2, BN, 12 steps, one repeat, a tiny LM: a smoke test")
    p.add_argument("--out", default="logs/bench/train.md", help="where the markdown table goes")
    args = p.parse_args(argv)
    if not any(o.split("=", 1)[0].lstrip("+~") == "logger" for o in args.overrides):
        # W&B costs nothing per step but its writes on logging steps, and seconds to start a run.
        args.overrides = ["logger=csv", *args.overrides]
    args.norms = args.norms or ["batch"] if args.quick else args.norms or ["batch", "group"]
    args.batches = args.batches or ([2] if args.quick else [2, 8, 32])
    args.steps = args.steps or (12 if args.quick else None)
    args.repeats = args.repeats or (1 if args.quick else None)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 10)
    if args.steps is not None and args.steps < args.warmup + 3:
        raise ConfigError(
            f"--steps {args.steps} leaves fewer than 3 steps after --warmup {args.warmup}. "
            f"Fix: raise --steps or lower --warmup."
        )
    return args


NOTES = [
    "steps/s: one over the median step of the runs (a hand step timed on its own; a normlab step from the end of "
    "the hand step before it to the start of the next)",
    "normlab / hand: normlab's median step over the hand-written loop's, per repeat; median and range over "
    "repeats; cpu ratio: the same with process time",
    f"target: at most {RESNET_TARGET} for ResNet-20 at batch 2 (2 CPU cores, fp32)",
    "both loops build the model with the same seed and run in the same process, in turn step by step",
]


def main(argv: list[str] | None = None) -> list[Result]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    given = [o.split("=", 1)[1] for o in args.overrides if o.split("=", 1)[0] == "threads"]
    warn_if_busy(int(given[-1]) if given and given[-1].isdigit() else DEFAULT_THREADS, "threads=1")
    results = [
        bench(label, overrides, steps, repeats, args.warmup) for label, overrides, steps, repeats in configs(args)
    ]
    text = table(results)
    print("\n" + text + "\n\n" + "\n".join(f"- {n}" for n in NOTES))
    path = write_report(
        args.out,
        "Training steps: normlab's Lightning path vs a hand-written loop",
        " ".join(["python scripts/bench_train.py", *argv]),
        text,
        NOTES,
    )
    print(f"\nwritten to {path}")
    return results
