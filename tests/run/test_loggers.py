"""The W&B run is a dashboard by itself: best and final validation values in the summary,
the keys a runs table groups by at the top level of the config, and names unique per arm."""

from __future__ import annotations

from normlab.run import train
from normlab.run.loggers import SUMMARIES, define_metrics, run_name
from tests.run.wandb_records import offline_run

FAST = [
    "debug=fast_dev_run",
    "data.subset=200",
    "data.batch=8",
    "data.eval_batch=50",
    "callbacks.batch_stats.precise_batches=2",
    "trainer.enable_progress_bar=false",
]


def test_val_curves_keep_their_best_and_final_value_in_the_summary():
    calls = []

    class Experiment:
        def define_metric(self, name, **kwargs):
            calls.append((name, kwargs))

    class Logger:
        experiment = Experiment()

    define_metrics(Logger())
    summaries = {name: set(kw["summary"].split(",")) for name, kw in calls}
    assert summaries["val/err"] == summaries["val/loss"] == {"min", "last"}
    assert set(SUMMARIES) <= set(summaries)


def test_run_names_say_the_experiment_and_tell_the_arms_of_a_sweep_apart(compose):
    from omegaconf import OmegaConf

    def name(*overrides):
        return run_name(OmegaConf.to_container(compose(list(overrides)), resolve=True))

    gn = name("experiment=gn_groups", "norm.num_groups=4", "seed=1")
    assert gn.startswith("gn_groups/group-g4-ws-b32-resnet10-s1-")
    # Arms that differ only below the norm's name, model.ws or the learning rate.
    arms = [name("experiment=gn_vs_bn", f"variant={v}", "data.batch=4") for v in ("gn", "gn_ws")]
    arms += [name("experiment=gn_vs_bn", "variant=bn", "data.batch=4", f"task.optim.lr={lr}") for lr in (0.1, 0.2)]
    assert len(set(arms)) == len(arms)
    assert name("norm=group", "paths.log_dir=/elsewhere") == name("norm=group")  # where it is written is not the run


def test_an_offline_run_has_the_grouping_keys_at_the_top_of_its_config(compose):
    cfg = compose(["norm=group", "model=resnet8", "seed=3", *FAST])
    summary = train(cfg)
    assert summary["status"] == "completed"
    config = offline_run(summary["run_dir"])["config"]  # as the .wandb file holds it
    flat = {
        k: config.get(k)
        for k in ("norm_name", "batch_per_device", "global_batch", "model_name", "seed", "experiment", "lr")
    }
    assert flat == {
        "norm_name": "group",
        "batch_per_device": 8,
        "global_batch": 8,
        "model_name": "resnet8",
        "seed": 3,
        "experiment": "default",
        "lr": summary["scale"]["lr"],
    }
    assert config["norm"]["num_groups"] == 8 and config["data"]["batch"] == 8  # the nested config is kept
