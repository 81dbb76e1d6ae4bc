"""Train a model: ``python train.py [overrides]`` (see README.md and configs/train.yaml).

Examples:
    python train.py                                   # the default circuit-board experiment
    python train.py model=efficientnet_b0 trainer.max_epochs=20 data.batch_size=64
    python train.py data=folder data.root=/path/to/images
    python train.py debug=fast
"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from trainer.evaluation.gate import exit_on_gate_failure
    from trainer.tasks.train import train
    from trainer.utils.entry import run_reporting_errors

    metrics = run_reporting_errors(exit_on_gate_failure, train, cfg)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    from trainer.evaluation.gate import rewrite_gate_args
    from trainer.utils.distributed import hydra_overrides_for_rank

    sys.argv = rewrite_gate_args(sys.argv)  # gate.min.test/f1=0.95 -> 'gate.min={test/f1:0.95}'
    sys.argv += hydra_overrides_for_rank(sys.argv)  # srun's ranks > 0: no .hydra/ of their own
    from trainer.utils.hydra_entry import hydra_entry

    hydra_entry(main, "train", __doc__)  # a typo in an override: one line, exit 2 (not 1: gate)
