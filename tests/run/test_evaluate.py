"""eval.py on a trained checkpoint: the training's own test numbers, eval.json in the run; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import run_script
from omegaconf import OmegaConf

from normlab.errors import ConfigError
from normlab.run import train
from normlab.run.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[2]
# One epoch of a few batches, with checkpoints: best.ckpt holds the weights the training tested.
TINY = [
    "debug=fast_dev_run",
    "trainer.enable_checkpointing=true",
    "data.subset=200",
    "data.batch=8",
    "data.eval_batch=50",
    "callbacks.batch_stats.precise_batches=2",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def run_eval(*args, timeout):
    """``python eval.py <args>``, importing this checkout's normlab, on one thread."""
    return run_script("eval.py", *args, timeout=timeout, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")


def eval_cfg(**kw):
    return OmegaConf.create(
        {"ckpt_path": None, "eval_batch": None, "batch_stats": None, "precise_bn": None, "threads": None, **kw}
    )


def test_eval_gives_the_trainings_test_err_and_writes_eval_json(compose):
    cfg = compose(["norm=batch", "model=resnet8", *TINY])
    summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    assert summary["status"] == "completed" and ckpt.is_file()
    result = evaluate(eval_cfg(ckpt_path=str(ckpt)))
    assert result["metrics"]["test/err"] == pytest.approx(summary["metrics"]["test/err"], abs=1e-4)
    assert result["metrics"]["test/loss"] == pytest.approx(summary["metrics"]["test/loss"], rel=1e-4)
    written = json.loads((run_dir / "eval.json").read_text())
    assert written["metrics"]["test/err"] == result["metrics"]["test/err"]
    # Eval-time choices apply: without batch_stats the batch-statistics numbers are not computed.
    plain = evaluate(eval_cfg(ckpt_path=str(ckpt), batch_stats=False, eval_batch=25))
    assert "test/err_batch_stats" in result["metrics"] and "test/err_batch_stats" not in plain["metrics"]
    assert plain["eval_batch"] == 25
    # The script itself: Hydra's config, the same number, eval.json rewritten.
    (run_dir / "eval.json").unlink()
    out = run_eval(f"ckpt_path={ckpt}", f"paths.log_dir={run_dir.parent / 'logs'}", timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    written = json.loads((run_dir / "eval.json").read_text())
    assert written["metrics"]["test/err"] == pytest.approx(summary["metrics"]["test/err"], abs=1e-4)


def test_a_missing_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"no checkpoint at .*Fix: "):
        evaluate(eval_cfg(ckpt_path=str(tmp_path / "nope.ckpt")))


def test_a_checkpoint_from_no_normlab_run_is_a_config_error(tmp_path):
    ckpt = tmp_path / "elsewhere" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"not in a normlab run directory.*Fix: "):
        evaluate(eval_cfg(ckpt_path=str(ckpt)))


def test_eval_py_prints_one_line_for_a_bad_checkpoint(tmp_path):
    out = run_eval(f"ckpt_path={tmp_path / 'nope.ckpt'}", f"paths.log_dir={tmp_path}", timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Fix:" in out.stderr and "Traceback" not in out.stderr


def test_weights_of_another_norm_are_one_config_error_naming_the_rename(compose):
    # A run trained before norm=bln meant the authors' layer: its config says bln, its weights are
    # the pooled variant's (now bln_pooled). eval.py and ckpt_path= say so instead of torch's key list.
    cfg = compose(["norm=bln_pooled", "model=resnet8", *TINY])
    assert train(cfg)["status"] == "completed"
    run_dir = Path(cfg.paths.output_dir)
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["config"]["norm"] = OmegaConf.to_container(compose(["norm=bln"]).norm, resolve=True)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match=r"do not fit .*norm=bln: .*now norm=bln_pooled.*Fix: ") as err:
        evaluate(eval_cfg(ckpt_path=str(ckpt)))
    assert "\n" not in str(err.value)
    again = compose(["norm=group", "model=resnet8", f"ckpt_path={ckpt}", *TINY])
    with pytest.raises(ConfigError, match=r"do not fit .*norm=group: \d+ in the checkpoint, not in the model"):
        train(again)
