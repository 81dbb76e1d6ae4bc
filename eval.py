"""Evaluate a checkpoint: ``python eval.py ckpt_path=PATH [overrides]`` (see configs/eval.yaml).

Examples:
    python eval.py ckpt_path=outputs/train/runs/<time>/checkpoints/epoch_007.ckpt
    python eval.py ckpt_path=... data=folder data.root=/path/to/images split=all
    python eval.py ckpt_path=... gate.min.test/f1=0.95 gate.max.test/ece=0.05

Exit codes: 0 done (gate passed or off), 1 the gate failed, 2 bad input (one line says which).
"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from trainer.evaluation.gate import exit_on_gate_failure
    from trainer.tasks.evaluate import evaluate
    from trainer.utils.entry import run_reporting_errors

    run_reporting_errors(exit_on_gate_failure, evaluate, cfg)


if __name__ == "__main__":
    from trainer.evaluation.gate import rewrite_gate_args

    sys.argv = rewrite_gate_args(sys.argv)  # gate.min.test/f1=0.95 -> 'gate.min={test/f1:0.95}'
    from trainer.utils.hydra_entry import hydra_entry

    hydra_entry(main, "eval", __doc__)  # a typo in an override: one line, exit 2 (1 is the gate)
