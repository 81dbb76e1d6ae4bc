"""Lightning's Rich progress bar, reading the step metrics only every N training steps.

Lightning's bar converts the logged step metrics (`train/loss`) to Python numbers after every
batch; on a GPU each conversion is a `.item()` that waits for the device, so the CPU can no longer
queue the next step while the GPU computes this one. Reading them every N steps keeps the bar
live and the GPU busy (a raw PyTorch loop has no such wait either).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class SyncFreeRichProgressBar(RichProgressBar):
    """RichProgressBar whose training-step metrics refresh every ``metrics_every_n_steps``."""

    def __init__(self, metrics_every_n_steps: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if metrics_every_n_steps < 1:
            raise ValueError(
                f"metrics_every_n_steps={metrics_every_n_steps}: use 1 or more "
                "(1 reads the metrics after every step)"
            )
        self.metrics_every_n_steps = metrics_every_n_steps
        self._cached: dict[str, int | str | float | dict[str, float]] | None = None

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        fresh = (
            not trainer.training
            or self._cached is None
            or trainer.global_step % self.metrics_every_n_steps == 0
        )
        if fresh:
            self._cached = super().get_metrics(trainer, pl_module)
        return self._cached
