"""A tiny trained checkpoint shared by the evaluation and gate tests (trained once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY, TINY_BOARDS, compose_cfg
from tests.helpers.evaluation import Trained


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from trainer.tasks.train import train

    tmp = tmp_path_factory.mktemp("trained")
    cfg = compose_cfg(
        [
            *TINY,
            *TINY_BOARDS,
            f"paths.data_dir={tmp / 'data'}",
            "trainer.max_epochs=2",
            "report_html=true",  # the page of training (test_html_report.py)
        ],
        tmp,
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    best = next((run / "checkpoints").glob("epoch_*.ckpt"))
    return Trained(run, best, tmp / "data", Path(cfg.paths.log_dir), metrics)
