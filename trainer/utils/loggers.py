"""Helpers to reach the TensorBoard writer of a Trainer, if it has one."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger


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
