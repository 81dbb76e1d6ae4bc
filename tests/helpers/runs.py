"""Run ``train.py`` in a subprocess at tiny size: the real entry point, as a user or SLURM would.

Subprocesses because DDP (``strategy=ddp``) re-launches the running script, which inside pytest
would be pytest itself, and because a kill test needs a process to kill.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, TINY, TINY_BOARDS

QUIET = [
    "callbacks.sample_images=null",
    "callbacks.weight_histograms=null",
    "logger.tensorboard.log_graph=false",
    "data.augment=[]",
]


def tiny_args(tmp: Path, *overrides: str) -> list[str]:
    """Overrides of a tiny run whose data and logs live in ``tmp``."""
    return [
        *TINY,
        *TINY_BOARDS,
        *QUIET,
        f"paths.data_dir={tmp / 'data'}",
        f"paths.log_dir={tmp / 'logs'}",
        *overrides,
    ]


def train_cmd(args: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *args]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_train(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """``python train.py args``; fails the test with the output when it does not exit 0."""
    proc = subprocess.run(
        train_cmd(args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"train.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return proc
