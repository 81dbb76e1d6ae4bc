"""Lightning's Rich progress bar, showing the training loss without a device sync every step.

A metric logged with ``prog_bar=True`` and ``on_step=True`` is turned into a Python number by
Lightning after every batch: on a GPU an ``.item()`` that waits for the device, so the CPU can no
longer queue the next step while the GPU computes this one (a raw PyTorch loop never waits). So
the training loss is logged without ``prog_bar``, and this bar reads its step value from the
callback metrics every ``metrics_every_n_steps`` optimizer steps instead.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class SyncFreeRichProgressBar(RichProgressBar):
    """RichProgressBar that shows ``loss_key`` (read every ``metrics_every_n_steps`` steps)."""

    def __init__(
        self, metrics_every_n_steps: int = 10, loss_key: str = "train/loss_step", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if metrics_every_n_steps < 1:
            raise ValueError(
                f"metrics_every_n_steps={metrics_every_n_steps}: use 1 or more "
                "(1 reads the loss after every step)"
            )
        self.metrics_every_n_steps = metrics_every_n_steps
        self.loss_key = loss_key
        self._loss: float | None = None
        self._loss_step = -1

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        items = super().get_metrics(trainer, pl_module)
        if not trainer.training:
            return items
        step = trainer.global_step
        due = self._loss is None or step - self._loss_step >= self.metrics_every_n_steps
        value = trainer.callback_metrics.get(self.loss_key)
        if due and value is not None:
            self._loss, self._loss_step = float(value), step  # the one sync, every N steps
        if self._loss is not None:
            items["train/loss"] = self._loss
        return items
