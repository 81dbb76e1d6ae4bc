"""The run history (trainer/history/): list, compare, plot, and flag regressions.

Examples:
    python scripts/history.py                                        # every run, newest last
    python scripts/history.py command=list backbone=resnet18 tag=pcb task=train
    python scripts/history.py command=list fingerprint=13ea7430 experiment=pcb_defect
    python scripts/history.py command=compare 'runs=[20261127-2015,20261128-0930]'   # id prefixes
    python scripts/history.py command=plot metric=test/f1 out=f1.png   # one line per dataset
    python scripts/history.py command=regressions metric=test/f1 margin=0.02
    python scripts/history.py command=regressions metric=test/ece lower_is_better=true

The database is ``outputs/history.sqlite`` unless ``db=PATH`` says otherwise; every key is in
configs/history.yaml. Exit code: 0 done, 1 ``regressions`` found one, 2 bad input (one line).
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


@hydra.main(version_base="1.3", config_path="../configs", config_name="history")
def main(cfg: DictConfig) -> None:
    from trainer.history.commands import run_command
    from trainer.utils.entry import run_reporting_errors

    sys.exit(run_reporting_errors(run_command, cfg))


if __name__ == "__main__":
    from trainer.utils.hydra_entry import hydra_entry

    hydra_entry(main, "history", __doc__)
