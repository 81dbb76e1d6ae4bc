"""Checkpoints of a model fitted without optimizer steps (a memory bank: ``model=patchcore``).

Lightning's ModelCheckpoint skips a save when the global step (the count of optimizer steps) has
not moved since its last save, and starts as if it had saved at step 0; a model that takes no
optimizer step is then never saved. This one counts epochs as progress for such a model and
behaves as BestCheckpoint (Lightning's, ties broken) for any other.
"""

from __future__ import annotations

from typing import Any

from trainer.callbacks.best_checkpoint import BestCheckpoint


class FitCheckpoint(BestCheckpoint):
    """BestCheckpoint that also saves models whose ``global_step`` stays 0."""

    _saved_epoch: int | None = None

    def _should_skip_saving_checkpoint(self, trainer: Any) -> bool:
        if trainer.global_step > 0:
            return super()._should_skip_saving_checkpoint(trainer)
        from lightning.pytorch.trainer.states import TrainerFn

        return (
            bool(trainer.fast_dev_run)
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or self._saved_epoch == trainer.current_epoch
        )

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._saved_epoch = trainer.current_epoch
