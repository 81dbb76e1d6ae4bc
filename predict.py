"""Score unlabelled images: ``python predict.py ckpt_path=PATH images=DIR|FILE|GLOB [overrides]``.

Writes ``<run>/predictions.csv`` and ``predictions.json`` (see configs/predict.yaml): one row per
image file with its label, class probabilities, defect score and pass/fail at the checkpoint's
operating point; an unreadable file gets a row with its error. Prints the data contract's drift
check on the images: "fits" or "retrain", and why.

Examples:
    python predict.py ckpt_path=outputs/train/runs/<time>/checkpoints/epoch_007.ckpt images=boards/
    python predict.py ckpt_path=... 'images=boards/**/*.png' overlay=true
    python predict.py ckpt_path=... images=board.png device=cpu

Exit codes: 0 at least one image scored, 1 no image could be read, 2 bad input (one line says
which).
"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    from trainer.tasks.predict import predict
    from trainer.utils.entry import run_reporting_errors

    if not run_reporting_errors(predict, cfg)["scored"]:
        sys.exit(1)


if __name__ == "__main__":
    from trainer.utils.hydra_entry import hydra_entry

    hydra_entry(main, "predict", __doc__)  # a typo in an override: one line, exit 2
