"""What the network sees, in TensorBoard at the end of training: feature maps and Grad-CAM.

A fixed set of validation images (evenly spaced over the set, so the same boards in every run
of the same data) is explained with the weights that will be tested and exported: the best
checkpoint's, loaded for the duration and put back afterwards.
Tags: ``explain/gradcam`` (boards and heatmaps, defect boxes drawn when the data has them) and
``explain/feature_maps/<i>`` (each stage's most active channels, low to high level).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import torch

from trainer.callbacks.common import best_weights, val_boxes, val_dataset
from trainer.utils.loggers import tensorboard_writer

log = logging.getLogger(__name__)


class ExplainImages(L.Callback):
    """Log feature maps and Grad-CAM of ``num_images`` validation images when training ends.

    Args:
        num_images: validation images explained (0: off).
        max_stages: feature-map stages shown (all of a CNN's; a ViT's blocks evenly spaced).
        channels: most active channels shown per stage.
        cam_layers: Grad-CAM target layers: auto | last | a list of module names.
    """

    def __init__(
        self,
        num_images: int = 8,
        max_stages: int = 5,
        channels: int = 8,
        cam_layers: str | Sequence[str] = "auto",
    ) -> None:
        self.num_images = num_images
        self.max_stages = max_stages
        self.channels = channels
        self.cam_layers = cam_layers

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        dataset = val_dataset(trainer)
        if writer is None or dataset is None or self.num_images <= 0:
            return
        from trainer.explain.projector import spaced_indices
        from trainer.explain.render import as_hwc, grid
        from trainer.explain.report import explain_images

        indices = spaced_indices(len(dataset), self.num_images)
        images = torch.stack([dataset[i][0] for i in indices])
        labels = [int(dataset[i][1]) for i in indices]
        boxes = val_boxes(trainer, dataset, indices, pl_module.preprocessing)
        with best_weights(trainer, pl_module) as which:
            explained = explain_images(
                pl_module,
                images,
                [f"val #{i} ({which} weights)" for i in indices],
                labels,
                boxes,
                self.max_stages,
                self.channels,
                self.cam_layers,
            )
        step = trainer.global_step
        writer.add_image(
            "explain/gradcam", as_hwc(grid([e.tile for e in explained])), step, dataformats="HWC"
        )
        for k, e in enumerate(explained):
            writer.add_image(
                f"explain/feature_maps/{k}", as_hwc(e.features), step, dataformats="HWC"
            )
        writer.flush()
