"""Lightning data modules: any image folder, and the generated circuit boards."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from trainer.data.dataset import ImageSamples
from trainer.data.fingerprint import dataset_fingerprint
from trainer.data.image_folder import FolderSplits, scan_image_folder
from trainer.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class ImageFolderDataModule(L.LightningDataModule):
    """Train/val/test loaders over a ``root/<class>/*`` tree (see ``scan_image_folder``).

    The model decides the input size: call ``set_preprocessing`` before ``setup``.

    Args:
        root: dataset folder.
        batch_size: images per batch on each device.
        num_workers: loader processes, or "auto".
        val_fraction, test_fraction, split_seed: the split when root does not give one.
        cache_in_memory: decode once, keep uint8 tensors.
        good_class: the pass class (used by metrics; kept here because it names data).
        pin_memory: pinned host memory, or "auto" (when CUDA is available).
        augment: transforms for training uint8 tensors (torchvision.transforms.v2).
        validate: the data checks before training: strict | warn | off (run by train.py,
            see trainer.data.contract.check_before_training).
    """

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 32,
        num_workers: int | str = "auto",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        cache_in_memory: bool = False,
        good_class: str | None = "good",
        pin_memory: bool | str = "auto",
        augment: Sequence[Any] | None = None,
        validate: str = "warn",
    ) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise ConfigError(f"data.batch_size: {batch_size} must be at least 1")
        self.root = Path(root).expanduser()
        self.batch_size = int(batch_size)
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.cache_in_memory = cache_in_memory
        self.good_class = good_class
        self.pin_memory = pin_memory
        self.augment = v2.Compose(list(augment)) if augment else None
        self.validate = validate
        self.preprocessing: dict[str, Any] | None = None
        self._scan: FolderSplits | None = None
        self.datasets: dict[str, ImageSamples] = {}

    @property
    def dataset_root(self) -> Path:
        """The folder that holds the images (PCBDataModule puts them below ``root``)."""
        return self.root

    @property
    def scan(self) -> FolderSplits:
        if self._scan is None:
            self._scan = scan_image_folder(
                self.dataset_root, self.val_fraction, self.test_fraction, self.split_seed
            )
        return self._scan

    @property
    def class_names(self) -> list[str]:
        return self.scan.class_names

    def set_preprocessing(self, preprocessing: dict[str, Any]) -> None:
        """Take the model's input size and interpolation (see ``preprocessing_of``)."""
        self.preprocessing = preprocessing

    def fingerprint(self) -> str:
        root = self.dataset_root
        return dataset_fingerprint(
            (f"{split}/{self.class_names[s.label]}/{s.path.relative_to(root).as_posix()}", s.path)
            for split, samples in self.scan.splits.items()
            for s in samples
        )

    def summary(self) -> dict[str, Any]:
        """What a checkpoint records about its data."""
        return {
            "root": str(self.dataset_root),
            "class_names": self.class_names,
            "counts": self.scan.counts(),
            "fingerprint": self.fingerprint(),
        }

    def _check_headers(self, split: str) -> None:
        """Open every file's header once, so a bad file fails now, named, not mid-epoch."""
        for sample in self.scan.splits[split]:
            try:
                with Image.open(sample.path) as img:
                    img.size  # noqa: B018 - reading the header is the check
            except (UnidentifiedImageError, OSError) as err:
                raise DataError(
                    f"cannot read image '{sample.path}': {err}; fix or remove the file"
                ) from err

    def _dataset(self, split: str, train: bool) -> ImageSamples:
        if self.preprocessing is None:
            raise RuntimeError("call set_preprocessing(model.preprocessing) before setup()")
        if not self.cache_in_memory:
            self._check_headers(split)
        return ImageSamples(
            self.scan.splits[split],
            size=self.preprocessing["resize"],
            transform=self.augment if train else None,
            cache=self.cache_in_memory,
            interpolation=self.preprocessing["interpolation"],
            description=f"decoding {split}",
        )

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "", ("train", "val", "test")
        )
        for split in wanted:
            if split not in self.datasets and self.scan.splits.get(split):
                self.datasets[split] = self._dataset(split, train=split == "train")

    def _workers(self) -> int:
        if self.num_workers != "auto":
            return int(self.num_workers)
        if self.cache_in_memory:
            return 0  # items are ready-made tensors: worker processes would only add IPC
        return max(0, min(8, (os.cpu_count() or 1) - 1))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise DataError(f"data.root: '{self.dataset_root}' has no {split} images")
        workers = self._workers()
        pin = torch.cuda.is_available() if self.pin_memory == "auto" else bool(self.pin_memory)
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0,
            drop_last=shuffle and len(self.datasets[split]) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class PCBDataModule(ImageFolderDataModule):
    """The procedural circuit boards, generated into ``root/pcb-<digest>`` on first use.

    Args:
        generator: fields of ``PCBSpec`` (image_size, num_train, num_val, num_test,
            good_fraction, seed).
        **kwargs: as ImageFolderDataModule.
    """

    def __init__(self, generator: dict[str, Any], **kwargs: Any) -> None:
        from trainer.data.pcb_generator import PCBSpec

        super().__init__(**kwargs)
        try:
            self.spec = PCBSpec(**dict(generator))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.generator: {err}") from err

    @property
    def dataset_root(self) -> Path:
        return self.root / f"pcb-{self.spec.digest()}"

    def prepare_data(self) -> None:
        from trainer.data.pcb_generator import generate_dataset

        if not (self.dataset_root / "metadata.json").is_file():
            log.info("Generating circuit boards into %s", self.dataset_root)
        generate_dataset(self.dataset_root, self.spec)
