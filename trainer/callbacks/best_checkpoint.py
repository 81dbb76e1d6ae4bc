"""The best checkpoint, a tie on the monitored metric broken by a second metric.

On a small validation split the monitored metric saturates: val/f1 reaches 1.0 at some epoch and
stays there while training goes on and the validation loss keeps falling. Lightning's
ModelCheckpoint keeps the first of equal scores, so the run tested and shipped the least trained
of the tied models: on scikit-image's lfw set, the epoch where val/f1 first reached 1.0 (val loss
0.069), not the one at val loss 0.008 four epochs later. A tie says nothing for the earlier epoch;
the loss still tells the tied models apart, so it decides.
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint; an equal ``monitor`` score replaces the kept checkpoint
    when ``tie_break`` (a logged metric; None: Lightning's rule) is better by ``tie_break_mode``.
    With ``save_top_k`` above 1 the tie is broken against the k-th kept checkpoint."""

    def __init__(
        self, *args: Any, tie_break: str | None = "val/loss", tie_break_mode: str = "min", **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        if tie_break_mode not in ("min", "max"):
            raise ValueError(f"tie_break_mode={tie_break_mode!r}: use min or max")
        self.tie_break = tie_break
        self.tie_break_mode = tie_break_mode
        self.tie_values: dict[str, float] = {}  # kept checkpoint path -> its tie_break value
        self._candidate: float | None = None  # this validation's value, for a path saved now

    def _ties(self) -> dict[str, float]:
        """Tie values of the kept checkpoints, the one being saved now included."""
        values = {**self.tie_values}
        if self._candidate is not None:
            values.update({p: self._candidate for p in self.best_k_models if p not in values})
        return {p: v for p, v in values.items() if p in self.best_k_models}

    def check_monitor_top_k(self, trainer: Any, current: Any = None) -> bool:
        self.tie_values = self._ties()  # the previous save's value, now under its path
        value = trainer.callback_metrics.get(self.tie_break) if self.tie_break else None
        self._candidate = None if value is None else float(value)
        if super().check_monitor_top_k(trainer, current):
            return True
        if current is None or self._candidate is None or self.save_top_k < 1:
            return False
        kept = self.tie_values.get(self.kth_best_model_path)
        tied = bool(current == self.best_k_models[self.kth_best_model_path])
        better = (
            kept is not None
            and not math.isnan(self._candidate)
            and (self._candidate < kept if self.tie_break_mode == "min" else self._candidate > kept)
        )
        # every process takes the same decision (the metrics are synchronised, this makes sure)
        return trainer.strategy.reduce_boolean_decision(tied and better)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "tie_values": self._ties()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.tie_values = dict(state_dict.get("tie_values", {}))
        self._candidate = None
