"""Check a dataset, or new data against a model's data contract (README: Data contract).

Examples:
    python scripts/validate_data.py data=folder data.root=/path/to/images
    python scripts/validate_data.py data=pcb                       # the generated boards
    python scripts/validate_data.py data.root=DIR validation.severity.imbalance=fail report=r.json
    python scripts/validate_data.py against=outputs/train/runs/<time> data.root=/path/to/new
    python scripts/validate_data.py against=best.ckpt data.root=/path/to/new

Exit code: 0 passed (or "fits"), 1 a finding fails the policy (or "retrain"), 2 a usage error.
The same data configs as training are composed (configs/validate.yaml); files are only read.
What it does: trainer/tasks/validate.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))


@hydra.main(version_base="1.3", config_path="../configs", config_name="validate")
def main(cfg: DictConfig) -> None:
    from trainer.tasks.validate import validate
    from trainer.utils.entry import run_reporting_errors

    sys.exit(run_reporting_errors(validate, cfg))


if __name__ == "__main__":
    from trainer.utils.hydra_entry import hydra_entry

    hydra_entry(main, "validate", __doc__)
