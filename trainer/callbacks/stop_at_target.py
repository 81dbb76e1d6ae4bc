"""Stop training once a validation metric reaches a target: time to accuracy, not to max_epochs."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np

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
        if value is not None and reached(float(value), self.target):
            log.info(
                "%s = %.4f reached the target %.4f: stopping.", self.monitor, value, self.target
            )
            trainer.should_stop = True


def reached(value: float, target: float) -> bool:
    """``value >= target`` at float32 precision: metrics are float32, and 380/400 correct is 95%
    even though float32(0.95) < 0.95 as a Python float."""
    return bool(np.float32(value) >= np.float32(target))
