"""Augmentations that torchvision.transforms.v2 lacks in the form the data presets need
(``configs/data/augment/``). Like v2's, they draw from torch's generator, which the loader seeds
per sample (``trainer/data/sampler.py``): a resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF


class RandomQuarterTurn(nn.Module):
    """Rotate by 0, 90, 180 or 270 degrees, each as likely; on a non-square image only by 0 or
    180 (a quarter turn would change its size). Exact: no interpolation, no border."""

    def forward(self, image: Tensor) -> Tensor:
        square = image.shape[-1] == image.shape[-2]
        turns = int(torch.randint(4 if square else 2, ()).item())
        return torch.rot90(image, turns if square else 2 * turns, dims=(-2, -1))


class RandomResizedCropSameSize(nn.Module):
    """v2.RandomResizedCrop back to the image's own size: the images reach the augmentation
    already at the model's input size (``ImageSamples``), which a preset cannot know."""

    def __init__(
        self, scale: Sequence[float] = (0.6, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3)
    ) -> None:
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale: {list(scale)} must be 0 < low <= high <= 1")
        self.crop = v2.RandomResizedCrop(size=1, scale=tuple(scale), ratio=tuple(ratio))

    def forward(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2:]
        params = self.crop.make_params([image])
        return TF.resized_crop(
            image,
            params["top"],
            params["left"],
            params["height"],
            params["width"],
            size=[height, width],
            antialias=True,
        )
