"""Images as uint8 tensors at the model's input size, optionally decoded once and kept in RAM.

Normalisation happens on the device (ImageClassifier.normalize), so this only decodes, resizes
and augments: the work a data worker must do anyway.

A training item is asked for as ``(index, epoch)`` (``trainer.data.sampler.EpochShuffle``): its
augmentation then draws from a torch generator seeded with (run seed, epoch, index), inside a
fork of the global one, so it is the same in any process, with any number of loader workers, in
an uninterrupted run as in a resumed one, and data loading leaves the global generators alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms.v2 import functional as TF

from trainer.data.image_folder import Sample
from trainer.data.sampler import augment_seed, run_seed
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


def load_images(files: Sequence[Path], preprocessing: dict[str, Any]) -> Tensor:
    """uint8 images (N, 3, H, W) resized exactly as the model was trained on them."""
    size, mode = preprocessing["resize"], preprocessing.get("interpolation", "bilinear")
    return torch.stack([load_image(f, size, mode) for f in files])


class ImageSamples(Dataset):
    """``(uint8 image, label)`` pairs for a list of samples.

    ``dataset[i]`` transforms with the global torch generator (as any Dataset does);
    ``dataset[(i, epoch)]`` with one seeded by ``augment_seed(seed, epoch, i)``. The transforms
    must draw from torch's generator: all of torchvision.transforms.v2 does (none uses Python's
    ``random`` or numpy).

    Args:
        samples: files and labels.
        size: (h, w) every image is resized to.
        transform: applied to the uint8 tensor each time an item is read (augmentation).
        cache: decode every image once (now) and keep the tensors; later epochs only augment.
        interpolation: resize interpolation from the backbone's config.
        seed: of the ``(index, epoch)`` augmentations; None takes the run's (``run_seed``).
    """

    def __init__(
        self,
        samples: list[Sample],
        size: Sequence[int],
        transform: Callable[[Tensor], Tensor] | None = None,
        cache: bool = False,
        interpolation: str = "bilinear",
        description: str = "decoding",
        seed: int | None = None,
    ) -> None:
        self.samples = samples
        self.seed = run_seed() if seed is None else int(seed)
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
            try:
                out[i] = load_image(sample.path, self.size, self.interpolation)
            except (OSError, ValueError, RuntimeError) as err:  # PIL's errors are OSErrors
                raise DataError(
                    f"cannot read image '{sample.path}': {str(err).splitlines()[0]}; fix or "
                    "remove the file"
                ) from err
        return out

    def __len__(self) -> int:
        return len(self.samples)

    def _image(self, index: int) -> Tensor:
        if self.images is not None:
            return self.images[index]
        return load_image(self.samples[index].path, self.size, self.interpolation)

    def _seeded(self, index: int, epoch: int) -> tuple[Tensor, int]:
        """The item with its (seed, epoch, index) augmentation; call inside a generator fork."""
        image = self._image(index)
        if self.transform is not None:
            # the CPU generator alone (what the transforms draw from and fork_rng saves):
            # torch.manual_seed also seeds every accelerator backend, 150 us against 1 us
            torch.default_generator.manual_seed(augment_seed(self.seed, epoch, index))
            image = self.transform(image)
        return image, int(self.labels[index])

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Tensor, int]:
        if isinstance(index, tuple):
            return self.__getitems__([index])[0]
        image = self._image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def __getitems__(self, indices: list[int | tuple[int, int]]) -> list[tuple[Tensor, int]]:
        """A batch (the DataLoader asks for whole batches): the global generator's state is saved
        and set back once for all of its seeded items, not once an item."""
        if not indices or not isinstance(indices[0], tuple):
            return [self[i] for i in indices]
        if self.transform is None:
            return [self._seeded(i, epoch) for i, epoch in indices]
        with torch.random.fork_rng(devices=[]):
            return [self._seeded(i, epoch) for i, epoch in indices]
