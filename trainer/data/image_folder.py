"""Find the images of a ``root/<class>/*`` tree and split them into train, val and test.

Two layouts are accepted: ``root/{train,val,test}/<class>/*`` (splits given; a missing val or
test split is carved from train), or ``root/<class>/*`` (split deterministically by seed,
stratified by class). Class names are the folder names, sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    path: Path
    label: int


@dataclass
class FolderSplits:
    """The class names and the samples of each split."""

    root: Path
    class_names: list[str]
    splits: dict[str, list[Sample]] = field(default_factory=dict)
    stray_files: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split."""
        out: dict[str, dict[str, int]] = {}
        for split, samples in self.splits.items():
            labels = np.bincount([s.label for s in samples], minlength=len(self.class_names))
            out[split] = {name: int(n) for name, n in zip(self.class_names, labels, strict=True)}
        return out


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(class_dir: Path, stray: list[Path]) -> list[Path]:
    files = sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    stray.extend(p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS)
    return images


def _collect(folder: Path, stray: list[Path]) -> dict[str, list[Path]]:
    dirs = _class_dirs(folder)
    if not dirs:
        raise DataError(
            f"data.root: '{folder}' has no class folders; expected <root>/<class>/*.png "
            "(one folder per class)"
        )
    found = {d.name: _images_in(d, stray) for d in dirs}
    for name, images in found.items():
        if not images:
            raise DataError(
                f"data.root: class folder '{folder / name}' holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder"
            )
    return found


def _stratified_split(
    by_class: dict[str, list[Path]], fractions: dict[str, float], seed: int
) -> dict[str, dict[str, list[Path]]]:
    """Split each class's files by ``fractions`` (the rest stays in train), reproducibly."""
    out: dict[str, dict[str, list[Path]]] = {s: {} for s in ("train", *fractions)}
    for index, (name, files) in enumerate(sorted(by_class.items())):
        order = np.random.default_rng([seed, index]).permutation(len(files))
        shuffled = [files[i] for i in order]
        start = 0
        for split, frac in fractions.items():
            n = int(round(frac * len(files)))
            if frac > 0 and n == 0 and len(files) >= 3:
                n = 1
            out[split][name] = sorted(shuffled[start : start + n])
            start += n
        out["train"][name] = sorted(shuffled[start:])
        if not out["train"][name]:
            raise DataError(
                f"data.root: class '{name}' has {len(files)} images, too few to split into "
                "train/val/test; add images or lower data.val_fraction and data.test_fraction"
            )
    return out


def scan_image_folder(
    root: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.15, split_seed: int = 0
) -> FolderSplits:
    """Scan ``root`` (either layout) into class names and per-split samples."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data.root: folder '{root}' does not exist; point data.root at a folder of "
            "<class>/ image folders"
        )
    for name, frac in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise DataError(f"{name}: {frac} is not in [0, 1)")
    stray: list[Path] = []
    if (root / "train").is_dir():
        given = {s: _collect(root / s, stray) for s in SPLITS if (root / s).is_dir()}
        missing = {
            s: f for s, f in (("val", val_fraction), ("test", test_fraction)) if s not in given
        }
        if missing:
            carved = _stratified_split(given["train"], missing, split_seed)
            given.update(carved)
        by_split = given
    else:
        by_split = _stratified_split(
            _collect(root, stray), {"val": val_fraction, "test": test_fraction}, split_seed
        )
    class_names = sorted(by_split["train"])
    for split, classes in by_split.items():
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise DataError(
                f"data.root: split '{split}' has classes {unknown} that train does not; "
                "every class needs training images"
            )
    splits = {
        split: [
            Sample(path, class_names.index(name))
            for name in class_names
            for path in classes.get(name, [])
        ]
        for split, classes in by_split.items()
    }
    return FolderSplits(root=root, class_names=class_names, splits=splits, stray_files=stray)
