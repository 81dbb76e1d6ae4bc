"""Helpers of the evaluation and gate tests: the trained run they share, ``python eval.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT


@dataclass
class Trained:
    run: Path  # the training run folder
    best: Path  # its best checkpoint
    data_dir: Path  # paths.data_dir of the run (the generated boards live below)
    log_dir: Path  # paths.log_dir of the run (history.sqlite)
    metrics: dict[str, float]  # what train() returned


def run_eval(*overrides: str, tmp: Path) -> subprocess.CompletedProcess:
    """``python eval.py`` as a user runs it, its outputs in ``tmp``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("TRAINER_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "eval.py", f"paths.log_dir={tmp / 'logs'}", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
