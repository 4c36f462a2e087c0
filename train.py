"""Train one configuration, or sweep many with -m.

    python train.py                                   # ResNet-20 + BatchNorm on offline MNIST
    python train.py norm=group data.batch=2
    python train.py -m norm=batch,group data.batch=2,4,8,16,32
    python train.py --cfg job                         # print the composed config
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
    from normlab.errors import ConfigError
    from normlab.run import train

    try:
        summary = train(cfg)
    except ConfigError as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records it and runs the other jobs
        log.debug("config error", exc_info=True)  # the traceback stays in the run's log file
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    metric = summary["metrics"].get(cfg.task.monitor)
    return metric if isinstance(metric, float) else None  # what Hydra sweepers optimise


if __name__ == "__main__":
    main()
