"""A labelled grid of training (augmented) and validation images in TensorBoard, once.

What the model is fed is the first thing to check when it does not learn.
"""

from __future__ import annotations

import lightning as L
import torch
from PIL import ImageDraw
from torch import Tensor
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import make_grid

from trainer.utils.loggers import tensorboard_writer


def labelled_grid(images: Tensor, labels: list[str], nrow: int = 8) -> Tensor:
    """uint8 images (N, 3, H, W) with their label written on each: a uint8 grid (3, H', W')."""
    tiles = []
    for image, label in zip(images, labels, strict=True):
        pil = TF.to_pil_image(image)
        draw = ImageDraw.Draw(pil)
        draw.rectangle((0, 0, pil.width, 11), fill=(0, 0, 0))
        draw.text((2, 0), label, fill=(255, 255, 255))
        tiles.append(TF.pil_to_tensor(pil))
    return make_grid(torch.stack(tiles), nrow=nrow, padding=2)


class SampleImages(L.Callback):
    """Log ``num_images`` labelled samples of the train and val loaders at the start of fit."""

    def __init__(self, num_images: int = 32) -> None:
        self.num_images = num_images

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or not self.num_images:
            return
        dm = trainer.datamodule
        for split in ("train", "val"):
            dataset = dm.datasets.get(split) if dm is not None else None
            if dataset is None or len(dataset) == 0:
                continue
            count = min(self.num_images, len(dataset))
            step = max(1, len(dataset) // count)
            items = [dataset[i] for i in range(0, step * count, step)]
            images = torch.stack([image for image, _ in items])
            names = [pl_module.class_names[label] for _, label in items]
            writer.add_image(f"samples/{split}", labelled_grid(images, names), 0)
