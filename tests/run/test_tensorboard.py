"""logger=tensorboard writes scalars and an HParams entry with the final metrics; logger=many writes all three."""

from __future__ import annotations

from pathlib import Path

import pytest

from normlab.run import train

FAST = [
    "debug=fast_dev_run",
    "data.subset=200",
    "data.batch=8",
    "data.eval_batch=50",
    "callbacks.batch_stats.precise_batches=2",
    "trainer.enable_progress_bar=false",
]


def read_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard events file"
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def hparams_of(acc) -> tuple[dict, set]:
    """The hparams and the metric names of the HParams plugin's session entry."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    params, metrics = {}, set()
    for raw in content.values():
        pd = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if pd.WhichOneof("data") == "session_start_info":
            for k, v in pd.session_start_info.hparams.items():
                params[k] = v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
        elif pd.WhichOneof("data") == "experiment":
            metrics |= {m.name.tag for m in pd.experiment.metric_infos}
    return params, metrics


def test_tensorboard_has_scalars_and_an_hparams_entry_with_the_final_metric(compose):
    pytest.importorskip("tensorboard")
    cfg = compose(["logger=tensorboard", "norm=group", "seed=2", *FAST])
    summary = train(cfg)
    assert summary["status"] == "completed"
    acc = read_events(Path(cfg.paths.output_dir))
    assert any(tag.startswith("train/") for tag in acc.Tags()["scalars"])
    params, metrics = hparams_of(acc)
    assert params["norm_name"] == "group" and params["seed"] == 2 and params["batch_per_device"] == 8
    assert params["global_batch"] == 8 and params["lr"] == pytest.approx(summary["scale"]["lr"])
    assert "test/err" in metrics and "hp_metric" not in metrics
    # The final value under the metric's own tag, as the HParams table reads it.
    final = acc.Scalars("test/err")[-1].value
    assert final == pytest.approx(summary["metrics"]["test/err"], abs=1e-6)


def test_many_writes_wandb_csv_and_tensorboard(compose):
    pytest.importorskip("tensorboard")
    cfg = compose(["logger=many", *FAST])
    summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert summary["status"] == "completed" and summary.get("wandb_dir")
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_missing_tensorboard_is_one_line_saying_how_to_install(monkeypatch, tmp_path):
    import sys

    from normlab.errors import ConfigError
    from normlab.run.loggers import tensorboard_logger

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    with pytest.raises(ConfigError, match=r"pip install"):
        tensorboard_logger(tmp_path)
