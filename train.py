"""Train one configuration, or sweep many with -m.

python train.py                                   # ResNet-20 + BatchNorm on offline MNIST
python train.py norm=group data.batch=2
python train.py trainer=ddp_cpu data.batch=4      # DDP over 2 CPU processes: global batch 8
python train.py -m norm=batch,group data.batch=2,4,8,16,32
python train.py --cfg job                         # print the composed config
python train.py resume=logs/runs/<run>            # continue a killed run where it stopped
"""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from normlab.errors import ConfigError, Diverged
from normlab.run import ddp, train
from normlab.run.resume import resume_argv

log = logging.getLogger("normlab")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
    except (ConfigError, Diverged) as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records it and runs the other jobs
        log.debug("run stopped", exc_info=True)  # the traceback stays in the run's log file
        print(f"{'error' if isinstance(err, ConfigError) else 'diverged'}: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, ConfigError) else 3)
    metric = summary["metrics"].get(cfg.task.monitor)
    return metric if isinstance(metric, float) else None  # what Hydra sweepers optimise


if __name__ == "__main__":
    if (rank_config := ddp.handed_over()) is not None:  # a DDP rank Lightning started: rank 0's config, no Hydra
        sys.exit(ddp.run_rank(rank_config, train))
    ddp.mark_entry_point()  # Lightning's DDP may start its other ranks by running this script again
    try:
        sys.argv = resume_argv(sys.argv)  # resume=<run dir>: the run's own overrides, in its own directory
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
