"""Find the images of a ``root/<class>/*`` tree and split them into train, val and test.

Two layouts are accepted: ``root/{train,val,test}/<class>/*`` (splits given; a missing val or
test split is carved from train), or ``root/<class>/*`` (split by ``split_seed``, per class).
Class names are the folder names, sorted.

Which classes: those of train; a val or test class that train lacks is refused (a classifier
cannot learn it). When training is restricted to some classes (``train_classes``, e.g.
``[good]`` for an anomaly model), the classes are those of every split and train needs only
those: the MVTec AD layout, ``train/good`` and ``test/<good or defect kind>``, whose val is
carved from ``train/good`` (good images only: the anomaly model's threshold is then the one
that rejects ``target_false_reject`` of them). A ``ground_truth/`` folder beside the splits
(defect masks) is no split and no class.

A file's split depends on that file alone, so that a growing folder never moves an old image
(a refresh on a grown folder must not test on what the parent trained on). Its draw is
``u = blake2b(f"{split_seed}:{key}", digest_size=8) / 2**64``, uniform in [0, 1), where
``key`` is its path below the folder that holds the class folders, in POSIX form
(``good/0001.png``: the same whether that folder is ``root`` or ``root/train``). The file is
val when ``u < val_fraction``, test when ``u >= 1 - test_fraction``, train otherwise: each
band depends on its own fraction only, so raising ``test_fraction`` takes images from train,
never from val. Renaming a file or moving it to another class draws it anew.

The fractions are expectations, not counts: 200 images at 15% give about 30 val images, not
exactly 30, and a small class may get no val or test image at all. Every class keeps at least
one training image: when all of a class's files fall in val or test (a class of a few files),
the one whose draw lies nearest the train band goes to train, and a warning says so; that file
is the one exception to "adding files never moves an old one" (it returns to val or test once
the class has a training image of its own).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer.errors import DataError

log = logging.getLogger(__name__)

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


def typical_side(samples: list[Sample], limit: int = 2000) -> int | None:
    """The median of sqrt(width x height) over ``samples`` (headers only; every n-th file past
    ``limit`` files), None without a readable one: the input size data=folder suggests."""
    from PIL import Image

    step = max(1, len(samples) // limit)
    sides = []
    for sample in samples[::step]:
        try:
            with Image.open(sample.path) as image:
                sides.append(float(np.sqrt(image.width * image.height)))
        except (OSError, ValueError):
            continue  # unreadable: the data checks name it
    return int(round(float(np.median(sides)))) if sides else None


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


def split_draw(key: str, seed: int) -> float:
    """The file's uniform draw in [0, 1): ``key`` is ``<class>/<path below the class folder>``."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _band(u: float, fractions: dict[str, float]) -> str:
    if u < fractions.get("val", 0.0):
        return "val"
    if u >= 1.0 - fractions.get("test", 0.0):
        return "test"
    return "train"


def _stratified_split(
    by_class: dict[str, list[Path]],
    fractions: dict[str, float],
    seed: int,
    folder: Path,
) -> dict[str, dict[str, list[Path]]]:
    """Split each class's files by ``fractions`` ({"val": f, "test": f}, or either alone) by each
    file's own draw (see the module docstring); the rest stays in train.

    Args:
        by_class: class name -> files, all below ``folder / <class>``.
        fractions: the splits to carve and their expected fractions; their sum must be below 1.
        seed: ``data.split_seed``.
        folder: the folder that holds the class folders (the draw's key is relative to it).
    """
    unknown = sorted(set(fractions) - {"val", "test"})
    if unknown:
        raise ValueError(f"fractions for {unknown}: only val and test are carved")
    total = sum(fractions.values())
    if total >= 1:
        names = " + ".join(f"data.{s}_fraction" for s in fractions)
        raise DataError(f"{names} = {total:g} leaves no image for training; keep the sum below 1")
    out: dict[str, dict[str, list[Path]]] = {s: {} for s in ("train", *fractions)}
    for name, files in sorted(by_class.items()):
        drawn = {p: split_draw(p.relative_to(folder).as_posix(), seed) for p in files}
        assigned = {p: _band(u, fractions) for p, u in drawn.items()}
        if files and "train" not in assigned.values():
            val_edge, test_edge = fractions.get("val", 0.0), 1.0 - fractions.get("test", 0.0)
            rescued = min(
                files, key=lambda p: (min(abs(drawn[p] - val_edge), abs(drawn[p] - test_edge)), p)
            )
            assigned[rescued] = "train"
            log.warning(
                "data.root: all %d images of class '%s' fell in val/test (split_seed=%d): "
                "'%s' goes to train; add images to this class",
                len(files),
                name,
                seed,
                rescued,
            )
        for split in out:
            out[split][name] = sorted(p for p, s in assigned.items() if s == split)
    return out


def scan_image_folder(
    root: str | Path,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    train_classes: Sequence[str] | None = None,
) -> FolderSplits:
    """Scan ``root`` (either layout) into class names and per-split samples.

    ``train_classes``: the classes training will use (``data.train_classes``); when given, a
    class found only in val or test is one of the data's classes (see the module docstring).
    """
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
            carved = _stratified_split(given["train"], missing, split_seed, root / "train")
            given.update(carved)
        by_split = given
    else:
        by_split = _stratified_split(
            _collect(root, stray), {"val": val_fraction, "test": test_fraction}, split_seed, root
        )
    found = by_split.values() if train_classes else [by_split["train"]]
    class_names = sorted({name for classes in found for name in classes})
    for split, classes in by_split.items():
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise DataError(
                f"data.root: split '{split}' has classes {unknown} that train does not; "
                "every class needs training images (an anomaly model trained on good images "
                "alone: data.train_classes=[good])"
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


def _images_below(folder: Path) -> list[Path]:
    """The images below ``folder``, recursively, sorted; hidden files and folders are skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def image_files(images: str | Path | list[str | Path], option: str = "images") -> list[Path]:
    """Image files named by ``images``: files, folders (their images, sorted, recursively, hidden
    ones skipped), glob patterns (``**`` spans folders; the images they match), or a list of
    these; ``option`` names the setting in the one-line error when an item names no image."""
    import glob

    items = images if isinstance(images, list | tuple) else [images]
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = _images_below(path)
            if not found:
                raise DataError(
                    f"{option}: folder '{path}' holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            files += found
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(str(path)):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
            found = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS]
            found += [f for m in matches if m.is_dir() for f in _images_below(m)]
            if not found:
                raise DataError(f"{option}: pattern '{path}' matches no image file")
            files += found
        else:
            raise DataError(f"{option}: '{path}' is neither an image file nor a folder")
    return files
