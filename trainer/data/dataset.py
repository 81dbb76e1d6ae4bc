"""Images as uint8 tensors at the model's input size, optionally decoded once and kept in RAM.

Normalisation happens on the device (ImageClassifier.normalize), so this only decodes, resizes
and augments: the work a data worker must do anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as TF

from trainer.data.image_folder import Sample
from trainer.errors import DataError

INTERPOLATION = {
    "bilinear": TF.InterpolationMode.BILINEAR,
    "bicubic": TF.InterpolationMode.BICUBIC,
    "nearest": TF.InterpolationMode.NEAREST,
}


FAST_DECODE = (".png", ".jpg", ".jpeg", ".webp")


def _decode_fast(path: Path) -> Tensor | None:
    """torchvision.io decoding (libpng/libjpeg, about 1.4x PIL here); None where PIL must do it."""
    try:
        image = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        return None
    return image if image.dtype == torch.uint8 else None  # 16-bit PNG: PIL's conversion


def _decode_pil(path: Path) -> Tensor:
    try:
        with Image.open(path) as img:
            return TF.pil_to_tensor(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read image '{path}': {err}; fix or remove the file") from err


def load_image(path: str | Path, size: Sequence[int], interpolation: str = "bilinear") -> Tensor:
    """Decode ``path`` to RGB and resize it to ``size`` (h, w): a uint8 tensor (3, h, w).

    Any mode Pillow reads (L, RGBA, P, CMYK, I;16) becomes RGB, as the model was trained on.
    """
    path = Path(path)
    image = _decode_fast(path) if path.suffix.lower() in FAST_DECODE else None
    if image is None:
        image = _decode_pil(path)
    mode = INTERPOLATION.get(interpolation, TF.InterpolationMode.BILINEAR)
    return TF.resize(image, list(size), interpolation=mode, antialias=True)


class ImageSamples(Dataset):
    """``(uint8 image, label)`` pairs for a list of samples.

    Args:
        samples: files and labels.
        size: (h, w) every image is resized to.
        transform: applied to the uint8 tensor each time an item is read (augmentation).
        cache: decode every image once (now) and keep the tensors; later epochs only augment.
        interpolation: resize interpolation from the backbone's config.
    """

    def __init__(
        self,
        samples: list[Sample],
        size: Sequence[int],
        transform: Callable[[Tensor], Tensor] | None = None,
        cache: bool = False,
        interpolation: str = "bilinear",
        description: str = "decoding",
    ) -> None:
        self.samples = samples
        self.size = list(size)
        self.transform = transform
        self.interpolation = interpolation
        self.labels = torch.tensor([s.label for s in samples], dtype=torch.long)
        self.images: Tensor | None = None
        if cache:
            self.images = self._decode_all(description)

    def _decode_all(self, description: str) -> Tensor:
        from rich.progress import track

        out = torch.empty((len(self.samples), 3, *self.size), dtype=torch.uint8)
        for i, sample in enumerate(
            track(self.samples, description=description, transient=True, disable=len(self) < 500)
        ):
            out[i] = load_image(sample.path, self.size, self.interpolation)
        return out

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if self.images is not None:
            image = self.images[index]
        else:
            image = load_image(self.samples[index].path, self.size, self.interpolation)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
