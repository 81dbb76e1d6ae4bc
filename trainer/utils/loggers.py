"""The project's TensorBoard logger, and helpers to reach the TensorBoard writer of a Trainer."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger


class GraphOnceTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger tracing the model graph once per run.

    Lightning calls ``log_graph`` at the start of every Trainer run, so ``train()`` traced the
    network at fit's start and again when it tests the best checkpoint: the same graph twice, a
    second torch.jit trace (most of what testing a small set costs).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._graph_logged = False

    def log_graph(self, model: L.LightningModule, input_array: Any = None) -> None:
        if self._graph_logged:
            return
        super().log_graph(model, input_array)
        self._graph_logged = True


def tensorboard_logger(trainer: L.Trainer) -> TensorBoardLogger | None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger
    return None


def tensorboard_writer(trainer: L.Trainer):  # noqa: ANN201 - SummaryWriter or None
    """The SummaryWriter on rank zero, else None (other ranks never write files)."""
    logger = tensorboard_logger(trainer)
    if logger is None or trainer.global_rank != 0:
        return None
    return logger.experiment
