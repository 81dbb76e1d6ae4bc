"""Stop training once a validation metric reaches a target: time to accuracy, not to max_epochs."""

from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger(__name__)


class StopAtTarget(L.Callback):
    """Stop when ``monitor`` >= ``target`` after a validation (``target`` None: never)."""

    def __init__(self, monitor: str = "val/acc", target: float | None = None) -> None:
        self.monitor = monitor
        self.target = target

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.target is None or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) >= self.target:
            log.info(
                "%s = %.4f reached the target %.4f: stopping.", self.monitor, value, self.target
            )
            trainer.should_stop = True
