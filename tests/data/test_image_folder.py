"""The folder data module on temporary trees: both layouts, the split, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.data.datamodule import ImageFolderDataModule
from trainer.data.image_folder import scan_image_folder
from trainer.errors import DataError

PRE = {"resize": [32, 32], "interpolation": "bilinear"}


def make_tree(root: Path, counts: dict[str, int], size: int = 40, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (size, size + i % 3, 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i:03d}.png")
    return root


def test_flat_tree_is_split_stratified_and_reproducibly(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "images", {"good": 20, "bad": 10})
    a = scan_image_folder(root, val_fraction=0.2, test_fraction=0.2, split_seed=1)
    b = scan_image_folder(root, val_fraction=0.2, test_fraction=0.2, split_seed=1)
    c = scan_image_folder(root, val_fraction=0.2, test_fraction=0.2, split_seed=2)
    assert a.class_names == ["bad", "good"]
    assert a.counts() == {
        "train": {"bad": 6, "good": 12},
        "val": {"bad": 2, "good": 4},
        "test": {"bad": 2, "good": 4},
    }
    assert [s.path for s in a.splits["val"]] == [s.path for s in b.splits["val"]]
    assert [s.path for s in a.splits["val"]] != [s.path for s in c.splits["val"]]
    seen = [s.path for split in a.splits.values() for s in split]
    assert len(seen) == len(set(seen)) == 30


def test_given_splits_are_used_and_missing_val_is_carved(tmp_path: Path) -> None:
    make_tree(tmp_path / "train", {"good": 10, "bad": 10})
    make_tree(tmp_path / "test", {"good": 3, "bad": 2})
    scan = scan_image_folder(tmp_path, val_fraction=0.2, test_fraction=0.5)
    assert scan.counts()["test"] == {"bad": 2, "good": 3}
    assert scan.counts()["val"] == {"bad": 2, "good": 2}
    assert scan.counts()["train"] == {"bad": 8, "good": 8}


def test_loader_gives_uint8_batches_at_the_model_size(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"good": 8, "bad": 8}, mode="L")
    for cache in (False, True):
        dm = ImageFolderDataModule(root, batch_size=4, num_workers=0, cache_in_memory=cache)
        dm.set_preprocessing(PRE)
        dm.setup("fit")
        images, labels = next(iter(dm.train_dataloader()))
        assert images.dtype == torch.uint8
        assert tuple(images.shape) == (4, 3, 32, 32)
        assert set(labels.tolist()) <= {0, 1}


def test_fingerprint_ignores_order_and_sees_content(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"good": 6, "bad": 6})
    first = ImageFolderDataModule(root).fingerprint()
    assert ImageFolderDataModule(root).fingerprint() == first
    Image.new("RGB", (40, 40), (1, 2, 3)).save(root / "good" / "000.png")
    assert ImageFolderDataModule(root).fingerprint() != first


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.root: folder '.*nowhere' does not exist"):
        scan_image_folder(tmp_path / "nowhere")


def test_root_without_class_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class folders"):
        scan_image_folder(tmp_path)


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    make_tree(tmp_path, {"good": 5})
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class' holds no images"):
        scan_image_folder(tmp_path)


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize("content", [b"", b"this is text, not a png", "truncated"])
def test_unreadable_image_is_named(tmp_path: Path, content, cache: bool) -> None:
    root = make_tree(tmp_path, {"good": 5, "bad": 5})
    bad = root / "bad" / "broken.png"
    if content == "truncated":
        data = (root / "bad" / "000.png").read_bytes()
        content = data[: len(data) // 2]
    bad.write_bytes(content)
    dm = ImageFolderDataModule(
        root, num_workers=0, val_fraction=0, test_fraction=0, cache_in_memory=cache
    )
    dm.set_preprocessing(PRE)
    with pytest.raises(DataError, match="broken.png"):
        dm.setup("fit")
        for _ in dm.train_dataloader():
            pass
