"""The validation images the model gets wrong most confidently, with Grad-CAM, every epoch
(within a time budget: ``max_share``).

Cheap by construction: a forward hook on the network keeps the logits that validation already
computes (no second forward pass), a bounded buffer keeps the top ``num_images`` errors, and
Grad-CAM runs for those only. Under DDP each rank sees its shard; rank zero logs its own.
Tag: ``explain/worst_mistakes``, step = epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from torch import Tensor

from trainer.callbacks.common import val_boxes, val_dataset
from trainer.callbacks.time_budget import TimeBudget
from trainer.explain.mistakes import MistakeBuffer, mistakes_figure, to_uint8
from trainer.utils.loggers import tensorboard_writer


class WorstMistakes(L.Callback):
    """Log the ``num_images`` highest-confidence validation errors after each validation.

    Args:
        num_images: errors shown (0: off).
        cam_layers: Grad-CAM target layers: auto | last | a list of module names.
        max_share: skip a validation epoch while this callback has taken more than this share of
            the training time (small data: an epoch of a second); null: every epoch.
    """

    def __init__(
        self,
        num_images: int = 8,
        cam_layers: str | Sequence[str] = "auto",
        max_share: float | None = 0.05,
    ) -> None:
        self.buffer = MistakeBuffer(num_images)
        self.cam_layers = cam_layers
        self._logits: Tensor | None = None
        self._hook: Any = None
        self._seen = 0
        self.budget = TimeBudget("callbacks.worst_mistakes.max_share", max_share)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.budget.start_fit()

    def _active(self, trainer: L.Trainer) -> bool:
        return (
            self.buffer.n > 0
            and not trainer.sanity_checking
            and tensorboard_writer(trainer) is not None
            and self.budget.allows()
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.buffer.reset()
        self._seen = 0
        if self._active(trainer):
            self._hook = pl_module.net.register_forward_hook(self._keep_logits)

    def _keep_logits(self, _module: Any, _inputs: Any, output: Tensor) -> None:
        self._logits = output.detach()

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._hook is None or self._logits is None:
            return
        x, y = batch
        with self.budget.measure():
            images = to_uint8(x, pl_module.mean, pl_module.std)
            probs = self._logits.float().softmax(dim=1)
            self.buffer.add(images, probs, y, first_index=self._seen)
        self._seen += len(y)
        self._logits = None

    def _boxes(self, trainer: L.Trainer) -> list | None:
        """Defect boxes, when the data has them and the validation order is the dataset's."""
        dataset = val_dataset(trainer)
        if dataset is None or trainer.world_size > 1 or self._seen != len(dataset):
            return None
        indices = [m.index for m in self.buffer.items]
        return val_boxes(trainer, dataset, indices, trainer.lightning_module.preprocessing)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is None:
            return
        self._hook.remove()
        self._hook = None
        from trainer.explain.render import as_hwc

        with self.budget.measure():
            figure = mistakes_figure(
                pl_module, self.buffer.items, self.cam_layers, self._boxes(trainer)
            )
            writer = tensorboard_writer(trainer)
            writer.add_image(
                "explain/worst_mistakes", as_hwc(figure), trainer.current_epoch, dataformats="HWC"
            )
        self.buffer.reset()
