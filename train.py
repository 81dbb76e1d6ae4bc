"""Train a model: ``python train.py [overrides]`` (see README.md and configs/train.yaml).

Examples:
    python train.py                                   # the default circuit-board experiment
    python train.py model=efficientnet_b0 trainer.max_epochs=20 data.batch_size=64
    python train.py data=folder data.root=/path/to/images
    python train.py debug=fast
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from trainer.train import train
    from trainer.utils.entry import run_reporting_errors

    metrics = run_reporting_errors(train, cfg)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    main()
