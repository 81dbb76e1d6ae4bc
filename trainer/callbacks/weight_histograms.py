"""Histograms of every weight tensor in TensorBoard: do the layers still move, or explode?"""

from __future__ import annotations

import lightning as L

from trainer.utils.loggers import tensorboard_writer


class WeightHistograms(L.Callback):
    """Log each parameter's distribution every ``every_n_epochs`` epochs (rank zero only)."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = max(1, every_n_epochs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or trainer.current_epoch % self.every_n_epochs:
            return
        for name, param in pl_module.net.named_parameters():
            writer.add_histogram(
                f"weights/{name}", param.detach().float().cpu(), trainer.current_epoch
            )
