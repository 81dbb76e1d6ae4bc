"""One tiny training run (test_resnet, a few boards) shared by the explanation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY, TINY_BOARDS, compose_cfg


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a 2-epoch tiny training with every explanation callback on."""
    from trainer.tasks.train import train

    tmp = tmp_path_factory.mktemp("explain_run")
    cfg = compose_cfg(
        [
            *TINY,
            *TINY_BOARDS,
            f"paths.data_dir={tmp / 'data'}",
            "trainer.max_epochs=2",
            "callbacks.explain_images.num_images=4",
            "callbacks.worst_mistakes.num_images=4",
            "callbacks.worst_mistakes.max_share=null",  # every epoch, however short
            "callbacks.embedding_projector.max_images=12",
        ],
        tmp,
    )
    train(cfg)
    return tmp / "run"


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_run: Path) -> Path:
    return next((tiny_run / "checkpoints").glob("epoch_*.ckpt"))
