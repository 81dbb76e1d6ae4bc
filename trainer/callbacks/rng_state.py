"""The random generators in every checkpoint, set back when a resumed fit trains again.

Lightning restores weights, optimizer, scheduler, loops and callback states, not the torch, CUDA,
numpy and Python generators: this callback is what makes a killed-and-restarted run end as the
one never interrupted (README, "Preemption and resume"; ``trainer.checkpoint.resume`` finds the
checkpoint to continue from).
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

__all__ = ["RngState"]


class RngState(L.Callback):
    """Store the random states in each checkpoint; set them back at the resumed fit's first batch.

    Lightning restores weights, optimizer, scheduler and loops, but not the generators that draw
    dropout (and anything else a model or callback draws while training). The states are those
    of the moment of the save: for ``last.ckpt`` the end of an epoch, after validation; for a
    checkpoint saved between two batches, that point. They are set back once, in the first
    ``on_train_batch_start`` of the resumed fit, not when Lightning loads the checkpoint nor at
    ``on_train_start``: until then, fit-start hooks (SampleImages augments its images; the
    module's ``on_train_start`` and any callback after this one) draw random numbers that the
    uninterrupted run drew at its own start, long before the checkpoint.
    That is exact because in the uninterrupted run nothing draws from these generators between a
    save and the next batch's start: the training order and the augmentations come from
    (seed, epoch, sample) (``trainer.data.sampler``), not from them. Keep this callback before
    others that draw in ``on_train_batch_start`` (Lightning calls callbacks in list order).

    Stored as tensors and plain lists so that the checkpoint still loads with
    ``weights_only=True``. Rank zero's state is saved (as it writes the checkpoint) and every rank
    gets it back; the CUDA state is the current device's.
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return {
            "torch": torch.get_rng_state(),
            "cuda": [torch.cuda.get_rng_state()] if cuda else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": [version, list(internal), gauss_next],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = dict(state_dict) or None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        state, self._to_restore = self._to_restore, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        if state.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"][0])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._to_restore = None  # a resumed fit with no batch left: not for the next fit
