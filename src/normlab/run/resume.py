"""Continue a run where it stopped: ``python train.py resume=<run dir>``.

The command repeats the run's own overrides (from ``<run dir>/.hydra/overrides.yaml``), so the
config is the run's; only settings that do not change what is trained may be added
(``ALLOWED``). The run continues in the same directory, from ``checkpoints/last.ckpt``, into the
same W&B run (its id is in ``summary.json``), and its CSV history is kept.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from normlab.atomic import atomic_write
from normlab.errors import ConfigError

# What a resumed run may set differently: how it runs, not what it trains (max_epochs extends it).
ALLOWED = (
    "threads",
    "trainer.max_epochs",
    "trainer.enable_progress_bar",
    "logger.wandb.mode",
    "checkpoint.every_n_steps",
    "ckpt_path",
)
# Keys that differ between two attempts of one run by design.
IGNORED = ("resume", "ckpt_path", "paths.", "logger.wandb.id")


def resume_argv(argv: list[str]) -> list[str]:
    """``train.py resume=<dir> [allowed overrides]`` -> ``train.py <the run's overrides> ... hydra.run.dir=<dir>``."""
    args = argv[1:]
    asked = [a for a in args if a.startswith("resume=")]
    if not asked:
        return argv
    if {"-m", "--multirun"} & set(args):
        raise ConfigError(
            "resume continues one run, not a sweep. Fix: resume each failed job of the sweep by its "
            "own directory, without -m: python train.py resume=<sweep dir>/<job number>."
        )
    run_dir = Path(asked[-1].split("=", 1)[1])
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise ConfigError(
            f"resume={run_dir} is not a run directory (it has no .hydra/overrides.yaml). "
            f"Fix: give a directory of logs/runs/ or logs/multiruns/<sweep>/."
        )
    import yaml

    original = [o for o in yaml.safe_load(saved.read_text()) or [] if not o.startswith(("resume=", "ckpt_path="))]
    extra = [a for a in args if not a.startswith("resume=")]
    for arg in extra:
        key = arg.split("=", 1)[0].lstrip("+~")
        if "=" in arg and not key.startswith("hydra.") and key not in ALLOWED:
            raise ConfigError(
                f"resume={run_dir} continues that run with its own config; {arg} would change what it "
                f"trains. Fix: drop {arg} (with resume, only {', '.join(ALLOWED)} may be set), "
                f"or start a new run without resume=."
            )
    return [argv[0], *original, *extra, f"resume={run_dir}", f"hydra.run.dir={run_dir}"]


@dataclass
class Resume:
    ckpt_path: Path
    wandb_id: str | None
    previous: dict  # the run's summary.json as it was


def resume_point(run_dir: Path, config: dict) -> Resume:
    """Where ``run_dir`` stopped, and whether ``config`` (resolved) is still the run's config."""
    path = Path(run_dir) / "summary.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"cannot resume {run_dir}: its summary.json is missing or unreadable ({type(err).__name__}). "
            f"Fix: start the run again without resume=."
        ) from None
    changed = _differences(previous.get("config", {}), config)
    if changed:
        raise ConfigError(
            f"cannot resume {run_dir} with a different config: {'; '.join(changed[:3])}. Fix: run "
            f"python train.py resume={run_dir} with no other overrides than {', '.join(ALLOWED)}."
        )
    was_epochs = previous.get("config", {}).get("trainer", {}).get("max_epochs")
    if previous.get("status") == "completed" and config["trainer"].get("max_epochs") == was_epochs:
        raise ConfigError(
            f"{run_dir} already completed its {was_epochs} epochs; there is nothing to resume. "
            f"Fix: to train it longer, add trainer.max_epochs=<more than {was_epochs}>."
        )
    asked = config.get("ckpt_path")
    if asked not in (None, "last"):  # the command a damaged last.ckpt suggests: ckpt_path=<an intact one>
        ckpt = Path(asked)
        if not ckpt.is_file() or (damage := checkpoint_damage(ckpt)):
            raise ConfigError(
                f"cannot resume {run_dir} from ckpt_path={asked}: "
                f"{damage or 'no such file'}. Fix: {_how_to_continue(Path(run_dir))}"
            )
        return Resume(ckpt, previous.get("wandb_id") or _wandb_id(Path(run_dir)), previous)
    ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise ConfigError(
            f"{run_dir} has no checkpoints/last.ckpt: it stopped before its first checkpoint. "
            f"Fix: start it again without resume= (and set checkpoint.every_n_steps=<N> to save "
            f"during an epoch)."
        )
    if damage := checkpoint_damage(ckpt):  # a failed disk or copy; normlab's own writes are atomic
        raise ConfigError(
            f"cannot resume {run_dir}: checkpoints/last.ckpt is damaged ({damage}). "
            f"Fix: {_how_to_continue(Path(run_dir))}"
        )
    return Resume(ckpt, previous.get("wandb_id") or _wandb_id(Path(run_dir)), previous)


def checkpoint_damage(path: Path) -> str | None:
    """Why ``path`` cannot be loaded as a checkpoint, or None. ``torch.save`` writes a zip archive
    whose members carry CRCs: reading them all finds a truncated or corrupted file before torch
    does, with a sentence instead of ``PytorchStreamReader failed reading zip archive``."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"not a whole checkpoint file: {err}"
    return f"its member {bad} fails its checksum" if bad else None


# A norm name that meant another layer before: what a checkpoint trained under the old meaning is now.
RENAMED = {
    "bln": "until 2026-12-05 norm=bln was the pooled variant, now norm=bln_pooled: for such a run, "
    "replace bln by bln_pooled in its .hydra/overrides.yaml, .hydra/config.yaml and summary.json. ",
}


def weights_misfit(module: torch.nn.Module, path: Path, norm: str) -> str | None:
    """Why the weights in checkpoint ``path`` do not load into ``module`` (built with ``norm``), in
    one sentence, or None. Lightning would stop in torch's ``load_state_dict`` with a list of keys."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    except Exception:  # not ours to judge: checkpoint_damage and Lightning report an unreadable file
        return None
    own = module.state_dict()
    strict = getattr(module, "strict_loading", True)  # the style task leaves out its fixed loss network
    kinds = {
        "in the model, not in the checkpoint": [k for k in own if k not in saved] if strict else [],
        "in the checkpoint, not in the model": [k for k in saved if k not in own],
        "of another shape": [k for k in saved if k in own and saved[k].shape != own[k].shape],
    }
    if not any(kinds.values()):
        return None
    found = "; ".join(f"{len(keys)} {kind} (e.g. {keys[0]})" for kind, keys in kinds.items() if keys)
    return (
        f"the weights in {path} do not fit the model this config builds with norm={norm}: {found}. "
        f"{RENAMED.get(norm, '')}Fix: load it with the norm and the model it was trained with."
    )


def _how_to_continue(run_dir: Path) -> str:
    """The best intact checkpoint of a run, and the command that continues from it."""
    folder = run_dir / "checkpoints"
    others = sorted(
        (p for p in folder.glob("*.ckpt") if p.name != "last.ckpt"),
        key=lambda p: (p.name != "best.ckpt", -p.stat().st_mtime),
    )
    intact = next((p for p in others if checkpoint_damage(p) is None), None)
    if intact is None:
        return "no intact checkpoint is left in checkpoints/; start the run again without resume=."
    what = "the best epoch's" if intact.name == "best.ckpt" else "an earlier"
    return (
        f"{intact.name} is intact ({what} checkpoint); continue from it with: "
        f"python train.py resume={run_dir} ckpt_path={intact}"
    )


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _differences(was: dict, now: dict) -> list[str]:
    a, b = _flatten(was), _flatten(now)
    keys = sorted(k for k in set(a) | set(b) if k not in ALLOWED and not k.startswith(IGNORED))
    return [f"{k}={b.get(k)} (the run has {a.get(k)})" for k in keys if a.get(k) != b.get(k)]


def _wandb_id(run_dir: Path) -> str | None:
    """The id of the run's W&B run, from its folder name (``offline-run-<time>-<id>``), for older summaries."""
    runs = sorted((run_dir / "wandb").glob("*run-*-*"))
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


# --- the CSV history ------------------------------------------------------------------------
# Lightning's CSV logger deletes an existing metrics.csv when it starts. The rows of the killed
# attempt are set aside first and put back in front of the new ones when the run ends, without
# the steps the new attempt repeated (those after the checkpoint it resumed from).


def set_aside_csv(run_dir: Path) -> Path | None:
    metrics = Path(run_dir) / "csv" / "metrics.csv"
    if not metrics.is_file():
        return None
    aside = metrics.with_name(f"metrics.before-resume.{os.getpid()}.csv")
    os.replace(metrics, aside)
    return aside


def merge_csv(run_dir: Path, aside: Path | None) -> None:
    if aside is None:
        return
    metrics = Path(run_dir) / "csv" / "metrics.csv"
    old = _read_rows(aside)
    new = _read_rows(metrics) if metrics.is_file() else []
    first_new = min((int(r["step"]) for r in new if r.get("step")), default=None)
    kept = [r for r in old if first_new is None or not r.get("step") or int(r["step"]) < first_new]
    fields = list(dict.fromkeys(k for r in kept + new for k in r))
    with atomic_write(metrics) as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept + new)
    aside.unlink()


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
