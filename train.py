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

log = logging.getLogger("normlab")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from normlab.divergence import Diverged
    from normlab.errors import ConfigError
    from normlab.run import train

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
    from normlab import ddp

    if (rank_config := ddp.handed_over()) is not None:  # a DDP rank Lightning started: rank 0's config, no Hydra
        sys.exit(ddp.run_rank(rank_config))
    ddp.mark_entry_point()  # Lightning's DDP may start its other ranks by running this script again

    from normlab.errors import ConfigError
    from normlab.resume import resume_argv

    try:
        sys.argv = resume_argv(sys.argv)  # resume=<run dir>: the run's own overrides, in its own directory
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
