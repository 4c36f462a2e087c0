"""Evaluate a trained checkpoint on the test split, without training; writes eval.json in its run.

python eval.py ckpt_path=logs/runs/<run>/checkpoints/best.ckpt
python eval.py ckpt_path=<ckpt> eval_batch=100 batch_stats=true precise_bn=200
"""

import json
import logging
import sys

import hydra
from omegaconf import DictConfig

from normlab.errors import ConfigError
from normlab.run.evaluate import evaluate

log = logging.getLogger("normlab")


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        result = evaluate(cfg)
    except ConfigError as err:
        log.debug("eval stopped", exc_info=True)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result["metrics"], indent=2))


if __name__ == "__main__":
    main()
