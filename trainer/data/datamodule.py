"""Lightning data modules: any image folder, and the generated circuit boards."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from trainer.data.dataset import ImageSamples
from trainer.data.fingerprint import DIGEST_PREFIX, dataset_fingerprint, file_sha256
from trainer.data.image_folder import SPLITS, FolderSplits, scan_image_folder
from trainer.data.pcb.spec import CLASSES, PCBSpec, generated_folder, smallest_split
from trainer.data.sampler import (
    EpochShuffle,
    FitLoader,
    balanced_epoch,
    balanced_weights,
    fit_position,
    loader_generator,
)
from trainer.errors import ConfigError, DataError
from trainer.utils.memory import physical_memory

log = logging.getLogger(__name__)
SAMPLERS = ("auto", "shuffle", "balanced")  # data.sampler


class ImageFolderDataModule(L.LightningDataModule):
    """Train/val/test loaders over a ``root/<class>/*`` tree (see ``scan_image_folder``).

    The model decides the input size: call ``set_preprocessing`` before ``setup``.

    Args:
        root: dataset folder.
        batch_size: images per batch on each device.
        num_workers: loader processes, or "auto".
        val_fraction, test_fraction, split_seed: the split when root does not give one.
        cache_in_memory: decode once, keep uint8 tensors; auto: when the decoded set (every
            split at the model's input size) takes at most ``cache_ram_share`` of this machine's
            memory, shared by the processes of a node.
        cache_ram_share: the share of memory ``cache_in_memory=auto`` may fill.
        good_class: the pass class (used by metrics; kept here because it names data).
        pin_memory: pinned host memory, or "auto" (when CUDA is available).
        augment: transforms for training uint8 tensors (torchvision.transforms.v2).
        validate: the data checks before training: strict | warn | off (run by train.py,
            see trainer.data.checks.contract.check_before_training).
        sampler: the training order: shuffle (each image once an epoch), balanced (every class
            drawn equally often, with replacement), or auto: balanced when the largest training
            class has more than ``max_imbalance`` times the images of the smallest (the data
            checks' threshold, ``validation.max_imbalance``), else shuffle. Logged either way.
        train_classes: train on these classes' images only (None: all), e.g. ``[good]`` for an
            anomaly model; val and test keep every class, the checkpoint's summary shows what
            train held. When set, a class with val or test images only is admitted (the MVTec
            AD layout: ``train/good``, ``test/<good or defect kind>``; ``scan_image_folder``).
        drop_last: drop a ragged last training batch; None: when a full batch remains (an
            anomaly model's bank wants every image: false).
    """

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 32,
        num_workers: int | str = "auto",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        cache_in_memory: bool | str = False,
        cache_ram_share: float = 0.25,
        good_class: str | None = "good",
        pin_memory: bool | str = "auto",
        augment: Sequence[Any] | None = None,
        validate: str = "warn",
        sampler: str = "auto",
        train_classes: Sequence[str] | None = None,
        drop_last: bool | None = None,
    ) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise ConfigError(f"data.batch_size: {batch_size} must be at least 1")
        if sampler not in SAMPLERS:
            raise ConfigError(f"data.sampler: '{sampler}' is not one of {', '.join(SAMPLERS)}")
        self.root = Path(root).expanduser()
        self.batch_size = int(batch_size)
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        if cache_in_memory not in (True, False, "auto"):
            raise ConfigError(
                f"data.cache_in_memory: '{cache_in_memory}' is not true, false or auto"
            )
        self.cache_in_memory = cache_in_memory
        self.cache_ram_share = float(cache_ram_share)
        self._cache: bool | None = None  # what cache_in_memory came to (caches)
        self.good_class = good_class
        self.pin_memory = pin_memory
        self.augment = v2.Compose(list(augment)) if augment else None
        self.validate = validate
        self.sampler = sampler
        self._order: str | None = None  # what `sampler` came to (choose_order)
        self.train_classes = list(train_classes) if train_classes else None
        self.drop_last = drop_last
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
            scan = scan_image_folder(
                self.dataset_root,
                self.val_fraction,
                self.test_fraction,
                self.split_seed,
                self.train_classes,
            )
            if self.train_classes:
                scan.splits["train"] = self._only_train_classes(scan)
            self._scan = scan
        return self._scan

    def _only_train_classes(self, scan: FolderSplits) -> list[Any]:
        unknown = [c for c in self.train_classes or [] if c not in scan.class_names]
        if unknown:
            raise ConfigError(
                f"data.train_classes: {unknown} not among the data's classes {scan.class_names}"
            )
        keep = {scan.class_names.index(c) for c in self.train_classes or []}
        kept = [s for s in scan.splits["train"] if s.label in keep]
        if not kept:
            raise DataError(
                f"data.train_classes: {self.train_classes}: no training image of these classes "
                f"in '{self.dataset_root}'"
            )
        log.info(
            "data.train_classes=%s: training on %d of %d training images",
            self.train_classes,
            len(kept),
            len(scan.splits["train"]),
        )
        return kept

    @property
    def class_names(self) -> list[str]:
        return self.scan.class_names

    def set_preprocessing(self, preprocessing: dict[str, Any]) -> None:
        """Take the model's input size and interpolation (see ``preprocessing_of``)."""
        self.preprocessing = preprocessing

    # Computed once: every file's sha256 (the fingerprint and the training record share it), the
    # summary, and what the parent's weights learnt from (set by exclude_trained).
    _digests: dict[Path, str] | None = None
    _summary: dict[str, Any] | None = None
    _inherited: frozenset[str] = frozenset()

    def file_digests(self) -> dict[Path, str]:
        """The sha256 of every file of every split, each file read once."""
        if self._digests is None:
            samples = [s for split in self.scan.splits.values() for s in split]
            self._digests = {s.path: file_sha256(s.path) for s in samples}
        return self._digests

    def fingerprint(self) -> str:
        root, names = self.dataset_root, self.class_names
        entries = (
            (f"{split}/{names[s.label]}/{s.path.relative_to(root).as_posix()}", s.path)
            for split, samples in self.scan.splits.items()
            for s in samples
        )
        return dataset_fingerprint(entries, self.file_digests())

    def summary(self) -> dict[str, Any]:
        """What a checkpoint records about its data; computed once (again after exclude_trained).

        ``trained_on_sha256_16`` lists (sorted) the first 16 hex chars of the sha256 of every
        image the weights learnt from: this run's train split and, after ``finetune_from``, the
        parent's record. A later refresh keeps those images out of its val and test.
        """
        if self._summary is None:
            digests = self.file_digests()
            own = {digests[s.path][:DIGEST_PREFIX] for s in self.scan.splits.get("train", [])}
            self._summary = {
                "root": str(self.dataset_root),
                "class_names": self.class_names,
                "counts": self.scan.counts(),
                "fingerprint": self.fingerprint(),
                "trained_on_sha256_16": sorted(own | self._inherited),
            }
        return dict(self._summary)

    def exclude_trained(
        self, trained: Iterable[str], splits: Sequence[str] = ("val", "test")
    ) -> dict[str, tuple[int, int]]:
        """Drop from ``splits`` the images whose sha256 prefix (16 hex chars) is in ``trained``,
        the record of what a parent learnt from, and add ``trained`` to this run's record.

        Call before ``setup`` and ``summary`` (train.py does, through ``load_parent``).
        Returns split -> (images dropped, images before).
        """
        trained = frozenset(trained)
        digests = self.file_digests()
        dropped: dict[str, tuple[int, int]] = {}
        for split in splits:
            samples = self.scan.splits.get(split) or []
            kept = [s for s in samples if digests[s.path][:DIGEST_PREFIX] not in trained]
            dropped[split] = (len(samples) - len(kept), len(samples))
            if split in self.scan.splits:
                self.scan.splits[split] = kept
            self.datasets.pop(split, None)
        self._inherited = self._inherited | trained
        self._summary = None
        return dropped

    def choose_order(self, max_imbalance: float | None = None) -> str:
        """Resolve ``sampler`` (auto: by the training classes' imbalance) and log the choice.

        ``max_imbalance`` is the data checks' threshold (train.py passes the run's policy);
        None takes the policy's default. Returns "shuffle" or "balanced".
        """
        if self._order is not None:
            return self._order
        counts = self.scan.counts().get("train", {})
        present = {name: n for name, n in counts.items() if n}
        ratio = max(present.values()) / min(present.values()) if present else 1.0
        if self.sampler != "auto":
            self._order = self.sampler
        else:
            if max_imbalance is None:
                from trainer.data.checks.policy import DEFAULTS

                max_imbalance = float(DEFAULTS["max_imbalance"])
            self._order = "balanced" if ratio > max_imbalance else "shuffle"
        if self._order == "balanced" or self.sampler == "auto" and ratio > 2:
            largest, smallest = max(present, key=present.get), min(present, key=present.get)
            why = (
                f"training classes {ratio:.1f}x imbalanced ('{largest}' {present[largest]}, "
                f"'{smallest}' {present[smallest]})"
            )
            if self.sampler == "auto":
                why += f", threshold validation.max_imbalance={max_imbalance:g}"
            other = "shuffle" if self._order == "balanced" else "balanced"
            epoch = max(present.values()) * len(present)
            log.info(
                "data.sampler=%s: %s: %s order (data.sampler=%s for the other)",
                self.sampler,
                why,
                f"class-balanced (each epoch draws every class {max(present.values())} times: "
                f"{epoch} images)"
                if self._order == "balanced"
                else "shuffled",
                other,
            )
        return self._order

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

    def caches(self) -> bool:
        """Whether images are decoded once and kept (``cache_in_memory``, auto resolved)."""
        if self._cache is None:
            if self.cache_in_memory != "auto":
                self._cache = bool(self.cache_in_memory)
            else:
                if self.preprocessing is None:
                    raise RuntimeError("call set_preprocessing(model.preprocessing) first")
                height, width = self.preprocessing["resize"]
                images = sum(len(samples) for samples in self.scan.splits.values())
                need = images * 3 * height * width
                trainer = getattr(self, "trainer", None)
                processes = int(getattr(trainer, "num_devices", 1) or 1) if trainer else 1
                budget = self.cache_ram_share * physical_memory() / processes
                self._cache = need <= budget
                log.info(
                    "data.cache_in_memory=auto: %d images at %dx%d take %.2f GB decoded, %s "
                    "%.0f%% of this machine's memory%s: %s",
                    images,
                    width,
                    height,
                    need / 1e9,
                    "within" if self._cache else "above",
                    100 * self.cache_ram_share,
                    f" / {processes} processes" if processes > 1 else "",
                    "decoded once, kept" if self._cache else "decoded every epoch",
                )
        return self._cache

    def _dataset(self, split: str, train: bool) -> ImageSamples:
        if self.preprocessing is None:
            raise RuntimeError("call set_preprocessing(model.preprocessing) before setup()")
        if not self.caches():
            self._check_headers(split)
        return ImageSamples(
            self.scan.splits[split],
            size=self.preprocessing["resize"],
            transform=self.augment if train else None,
            cache=self.caches(),
            interpolation=self.preprocessing["interpolation"],
            description=f"decoding {split}",
        )

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "", SPLITS
        )
        for split in wanted:
            if split not in self.datasets and self.scan.splits.get(split):
                self.datasets[split] = self._dataset(split, train=split == "train")

    def _workers(self) -> int:
        if self.num_workers != "auto":
            return int(self.num_workers)
        if self.caches():
            return 0  # items are ready-made tensors: worker processes would only add IPC
        return max(0, min(8, (os.cpu_count() or 1) - 1))

    def _processes(self) -> tuple[int, int]:
        """(world size, global rank) of the Trainer this module is attached to; (1, 0) alone."""
        trainer = getattr(self, "trainer", None)
        connector = getattr(trainer, "_accelerator_connector", None)
        # alone, or the user shards the data (trainer.use_distributed_sampler=false)
        if trainer is None or not getattr(connector, "use_distributed_sampler", False):
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _fit_position(self) -> tuple[int, int] | None:
        """(epoch, batches done) of the running fit, for the training sampler (``fit_position``)."""
        trainer = getattr(self, "trainer", None)
        state = getattr(trainer, "state", None)
        fitting = state is not None and state.fn == "fit" and state.status == "running"
        return fit_position(trainer) if fitting else None

    def _loader(self, split: str, shuffle: bool, distributed: bool = True) -> DataLoader:
        if split not in self.datasets:
            raise DataError(f"data.root: '{self.dataset_root}' has no {split} images")
        dataset = self.datasets[split]
        world, rank = self._processes() if distributed else (1, 0)
        sampler = None
        if shuffle:  # order and augmentations of (seed, epoch, sample): a resumed run's alike
            labels = [sample.label for sample in dataset.samples]
            balanced = self.choose_order() == "balanced"
            sampler = EpochShuffle(
                len(dataset),
                num_replicas=world,  # a DistributedSampler: Lightning keeps it under DDP
                rank=rank,
                batch_size=self.batch_size,
                position=self._fit_position,  # the resumed epoch, past the batches already done
                weights=balanced_weights(labels) if balanced else None,
                draws=balanced_epoch(labels) if balanced else None,
            )
        elif world > 1:
            sampler = _unpadded_sampler(dataset, split, world, rank)
        workers = self._workers()
        pin = torch.cuda.is_available() if self.pin_memory == "auto" else bool(self.pin_memory)
        loader = FitLoader if shuffle else DataLoader  # (FitLoader: the sampler asks at 1st batch)
        return loader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # each iterator draws its workers' base seed from it: else from the global generator,
            # at times that differ in a resumed run (persistent workers: once a process)
            generator=loader_generator(),
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0,
            # each process sees len / world images: drop the ragged batch only if one remains
            drop_last=shuffle
            and (
                len(dataset) // world > self.batch_size
                if self.drop_last is None
                else bool(self.drop_last)
            ),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def eval_dataloader(self, split: str) -> DataLoader:
        """The ``val`` or ``test`` loader of one process that reads the whole split (reports)."""
        self.setup("validate" if split == "val" else "test")
        return self._loader(split, shuffle=False, distributed=False)


def _unpadded_sampler(dataset: Any, split: str, world: int, rank: int) -> Any:
    """Each image of ``split`` on exactly one process.

    Lightning's default DistributedSampler pads the split with repeated images so that every
    process runs as many batches as the others; the repeats then count twice in the metrics.
    This sampler hands out ``range(rank, n, world)``: the processes differ by one image at most.
    Safe for evaluation: nothing synchronises per batch (the metrics gather once per epoch).
    """
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    if len(dataset) < world:
        raise DataError(
            f"data: the {split} split has {len(dataset)} images, fewer than the {world} "
            f"processes (trainer.devices x trainer.num_nodes); add images to it (or raise "
            f"data.{split}_fraction) or run on fewer devices"
        )
    return UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)


class PCBDataModule(ImageFolderDataModule):
    """The procedural circuit boards, generated into ``root/pcb-<digest>`` on first use.

    Args:
        generator: fields of ``PCBSpec`` (image_size, num_train, num_val, num_test,
            good_fraction, seed).
        **kwargs: as ImageFolderDataModule.
    """

    def __init__(self, generator: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            self.spec = PCBSpec(**dict(generator))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.generator: {err}") from err
        # Refused here, before minutes of rendering: a split with a class left without images
        # would only fail later as an empty class folder (training needs every split).
        gf = self.spec.good_fraction
        need = smallest_split(gf)
        if need is None:
            raise ConfigError(
                f"data.generator.good_fraction={gf}: a class would get no images in a split of "
                "up to a million images; use a value well inside (0, 1), e.g. 0.4 or 0.95"
            )
        for name in ("num_train", "num_val", "num_test"):
            n = getattr(self.spec, name)
            if n < need:
                raise ConfigError(
                    f"data.generator.{name}={n}: a split needs at least {need} images for each "
                    f"of the {len(CLASSES)} classes to get one (good_fraction {gf}); "
                    f"set data.generator.{name}={need} or more"
                )

    @property
    def dataset_root(self) -> Path:
        return generated_folder(self.root, self.spec)

    def prepare_data(self) -> None:
        from trainer.data.pcb.write import generate_dataset

        if not (self.dataset_root / "metadata.json").is_file():
            log.info("Generating circuit boards into %s", self.dataset_root)
        generate_dataset(self.dataset_root, self.spec)
