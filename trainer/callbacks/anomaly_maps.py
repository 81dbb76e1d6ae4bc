"""An anomaly model in TensorBoard: its maps of fixed validation images, and its score histograms.

After each validation of an anomaly model (``model=patchcore``, ``kind == "anomaly"``), with the
memory bank just built:

- ``anomaly/maps``: fixed validation images, half good and half defective where val holds both
  (evenly spaced within each, so the same boards in every run of the same data), each beside its
  anomaly map overlaid, on one common scale (``trainer.explain.anomaly_maps``), with the defect
  box where the generator wrote one: where the model looks, as Grad-CAM is for the classifier
  (``explain_images``).
- ``anomaly/val_scores/good`` and ``anomaly/val_scores/defect``: histograms of the validation
  scores of good and of defective images (the second only when val holds defects): how far
  apart they lie is what any threshold can make of them.

The scores are those of the validation step (``validation_step`` returns them); under DDP every
process's share is gathered. A classifier is left alone.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from trainer.callbacks.common import val_boxes, val_dataset
from trainer.utils.loggers import tensorboard_writer


def fixed_indices(labels: list[int], good: int, count: int) -> list[int]:
    """``count`` indices, half of defective images and the rest good (fewer when one kind runs
    short), each half evenly spaced over its kind, good ones first."""
    from trainer.explain.projector import spaced_indices

    goods = [i for i, y in enumerate(labels) if y == good]
    defects = [i for i, y in enumerate(labels) if y != good]
    n_defect = min(len(defects), count // 2) if goods else min(len(defects), count)
    n_good = min(len(goods), count - n_defect)
    n_defect = min(len(defects), count - n_good)
    pick_good = [goods[i] for i in spaced_indices(len(goods), n_good)] if n_good else []
    pick_defect = [defects[i] for i in spaced_indices(len(defects), n_defect)] if n_defect else []
    return pick_good + pick_defect


class AnomalyMaps(L.Callback):
    """Log the anomaly maps of ``num_images`` validation images and the score histograms.

    Args:
        num_images: validation images shown (0: no maps; the histograms are logged still).
    """

    def __init__(self, num_images: int = 8) -> None:
        self.num_images = int(num_images)
        self._scores: list[Tensor] = []
        self._labels: list[Tensor] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._scores, self._labels = [], []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if isinstance(outputs, Tensor):
            self._scores.append(outputs.detach().float().cpu())
            self._labels.append(batch[1].detach().cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(pl_module, "kind", None) != "anomaly" or trainer.sanity_checking:
            return
        scores, labels = _gathered(self._scores), _gathered(self._labels)
        writer = tensorboard_writer(trainer)
        if writer is None or not len(scores):
            return
        step = trainer.global_step
        is_good = labels == pl_module.good_index
        writer.add_histogram("anomaly/val_scores/good", scores[is_good], step)
        if (~is_good).any():
            writer.add_histogram("anomaly/val_scores/defect", scores[~is_good], step)
        dataset = val_dataset(trainer)
        if self.num_images > 0 and dataset is not None:
            picture = self._picture(trainer, pl_module, dataset)
            writer.add_image("anomaly/maps", picture, step, dataformats="HWC")
        writer.flush()

    def _picture(self, trainer: L.Trainer, pl_module: Any, dataset: Any) -> Any:
        """The chosen images beside their maps, one grid (uint8 HWC)."""
        from trainer.explain.anomaly_maps import anomaly_maps, common_scale, verdict
        from trainer.explain.render import as_hwc, explained_tile, grid

        labels = [s.label for s in dataset.samples]
        indices = fixed_indices(labels, pl_module.good_index, self.num_images)
        images = torch.stack([dataset[i][0] for i in indices])
        maps, scores = anomaly_maps(pl_module, images)
        heat = common_scale(maps)
        boxes = val_boxes(trainer, dataset, indices, pl_module.preprocessing)
        tiles = [
            explained_tile(
                images[k],
                heat[k],
                [
                    f"val #{i}",
                    f"true: {pl_module.class_names[labels[i]]}",
                    verdict(float(scores[k]), None),
                ],
                boxes[k],
            )
            for k, i in enumerate(indices)
        ]
        return as_hwc(grid(tiles))


def _gathered(parts: list[Tensor]) -> Tensor:
    """This process's tensors concatenated, and under DDP every process's (shares may differ
    in length: the validation sampler repeats no image)."""
    mine = torch.cat(parts) if parts else torch.zeros(0)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return mine
    every: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(every, mine)
    return torch.cat(every)
