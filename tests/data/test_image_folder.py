"""The folder data module on temporary trees: both layouts, the split, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.data.datamodule import ImageFolderDataModule
from trainer.data.image_folder import SPLITS, _stratified_split, scan_image_folder
from trainer.errors import ConfigError, DataError

PRE = {"resize": [32, 32], "interpolation": "bilinear"}


def make_tree(
    root: Path, counts: dict[str, int], size: int = 40, mode: str = "RGB", first: int = 0
) -> Path:
    """``counts[name]`` noise images in ``root/name``, named from ``first`` (003.png, ...)."""
    rng = np.random.default_rng(first)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(first, first + n):
            pixels = rng.integers(0, 255, (size, size + i % 3, 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i:03d}.png")
    return root


def test_flat_tree_is_split_per_class_and_reproducibly(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "images", {"good": 20, "bad": 10})
    a = scan_image_folder(root, val_fraction=0.2, test_fraction=0.2, split_seed=1)
    b = scan_image_folder(root, val_fraction=0.2, test_fraction=0.2, split_seed=1)
    c = scan_image_folder(root, val_fraction=0.2, test_fraction=0.2, split_seed=2)
    assert a.class_names == ["bad", "good"]
    assert all(n > 0 for n in a.counts()["train"].values())
    assert {split: sum(c.values()) for split, c in a.counts().items()}["train"] >= 10
    assert a.splits == b.splits
    assert [s.path for s in a.splits["val"]] != [s.path for s in c.splits["val"]]
    seen = [s.path for split in a.splits.values() for s in split]
    assert len(seen) == len(set(seen)) == 30


def _split_of(scan) -> dict[Path, str]:
    return {s.path: split for split, samples in scan.splits.items() for s in samples}


@pytest.mark.parametrize("added", [{"good": 10, "bad": 10}, {"bad": 1}])
def test_adding_files_moves_no_old_file(tmp_path: Path, added: dict[str, int]) -> None:
    """A refresh on a grown folder must not test on images an earlier run trained on."""
    root = make_tree(tmp_path, {"good": 120, "bad": 80}, size=4)
    before = _split_of(scan_image_folder(root))
    make_tree(root, added, size=4, first=200)  # new names next to the old files
    after = _split_of(scan_image_folder(root))
    assert len(after) == 200 + sum(added.values())
    moved = sorted(p.name for p, split in before.items() if after[p] != split)
    assert moved == [], f"{len(moved)} old images changed split: {moved[:5]}"
    counts = {split: list(after.values()).count(split) for split in SPLITS}
    assert 10 <= counts["val"] <= 60 and 10 <= counts["test"] <= 60  # about 15% each


def test_split_ignores_listing_order_and_follows_the_seed(tmp_path: Path) -> None:
    files = [tmp_path / "good" / f"{i:03d}.png" for i in range(60)]
    split = _stratified_split({"good": files}, {"val": 0.2, "test": 0.2}, 0, tmp_path)
    shuffled = _stratified_split({"good": files[::-1]}, {"val": 0.2, "test": 0.2}, 0, tmp_path)
    other_seed = _stratified_split({"good": files}, {"val": 0.2, "test": 0.2}, 1, tmp_path)
    assert split == shuffled
    assert split != other_seed
    assert sorted(p for s in split.values() for p in s["good"]) == sorted(files)


def test_a_file_keeps_its_split_when_the_tree_moves_under_train(tmp_path: Path) -> None:
    """The draw's key is the path below the folder of class folders: ``good/000.png``."""
    flat = scan_image_folder(make_tree(tmp_path / "flat", {"good": 30, "bad": 30}))
    (tmp_path / "given").mkdir()
    (tmp_path / "flat").rename(tmp_path / "given" / "train")
    carved = scan_image_folder(tmp_path / "given")
    assert {p.relative_to(tmp_path / "flat"): s for p, s in _split_of(flat).items()} == {
        p.relative_to(tmp_path / "given" / "train"): s for p, s in _split_of(carved).items()
    }


def test_a_tiny_class_keeps_a_training_image(tmp_path: Path, caplog) -> None:
    root = make_tree(tmp_path, {"good": 30, "rare": 2}, size=4)
    rescued = 0
    for seed in range(20):
        scan = scan_image_folder(root, val_fraction=0.45, test_fraction=0.45, split_seed=seed)
        assert scan.counts()["train"]["rare"] >= 1
        assert sum(len(s) for s in scan.splits.values()) == 32
        rescued += "fell in val/test" in caplog.text
        caplog.clear()
    assert rescued, "no seed put both rare images out of train: the rescue went untested"


def test_fractions_that_leave_nothing_to_train_on(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"good": 5, "bad": 5}, size=4)
    with pytest.raises(DataError, match=r"data.val_fraction \+ data.test_fraction = 1.1"):
        scan_image_folder(root, val_fraction=0.6, test_fraction=0.5)


def test_given_splits_are_used_and_missing_val_is_carved(tmp_path: Path) -> None:
    make_tree(tmp_path / "train", {"good": 10, "bad": 10})
    make_tree(tmp_path / "test", {"good": 3, "bad": 2})
    scan = scan_image_folder(tmp_path, val_fraction=0.2, test_fraction=0.5)
    counts = scan.counts()
    assert counts["test"] == {"bad": 2, "good": 3}
    assert {c: counts["train"][c] + counts["val"][c] for c in ("bad", "good")} == {
        "bad": 10,
        "good": 10,
    }
    assert sum(counts["val"].values()) > 0
    assert all(s.path.parent.parent.name == "train" for s in scan.splits["val"])


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


def test_each_file_is_read_once_and_the_training_images_are_recorded(
    tmp_path: Path, monkeypatch
) -> None:
    from trainer.data import datamodule as dm_module
    from trainer.data import fingerprint as fp_module

    root = make_tree(tmp_path, {"good": 12, "bad": 12}, size=4)
    reads: list[Path] = []
    real = fp_module.file_sha256
    for module in (dm_module, fp_module):
        monkeypatch.setattr(module, "file_sha256", lambda p: reads.append(p) or real(p))
    dm = ImageFolderDataModule(root)
    first = dm.summary()
    assert dm.summary() == first and dm.fingerprint() == first["fingerprint"]
    assert sorted(reads) == sorted(root.rglob("*.png")), "every file read exactly once"
    train = [s.path for s in dm.scan.splits["train"]]
    assert first["trained_on_sha256_16"] == sorted({real(p)[:16] for p in train})
    assert first["fingerprint"] == ImageFolderDataModule(root).fingerprint()


def test_exclude_trained_drops_those_contents_from_val_and_test(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"good": 30, "bad": 30}, size=4)
    dm = ImageFolderDataModule(root)
    before = dm.summary()
    digests = dm.file_digests()
    test_paths = [s.path for s in dm.scan.splits["test"]]
    parent = {digests[p][:16] for p in test_paths[:3]} | {"0" * 16}
    dropped = dm.exclude_trained(parent)
    assert dropped == {
        "val": (0, before["counts"]["val"]["good"] + before["counts"]["val"]["bad"]),
        "test": (3, len(test_paths)),
    }
    assert [s.path for s in dm.scan.splits["test"]] == test_paths[3:]
    after = dm.summary()
    assert after["fingerprint"] != before["fingerprint"]
    assert set(after["trained_on_sha256_16"]) == set(before["trained_on_sha256_16"]) | parent


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


def test_under_ddp_each_val_and_test_image_is_scored_on_exactly_one_process() -> None:
    """Lightning's DistributedSampler pads 15 images to 16 on 2 processes: one counts twice."""
    from trainer.data.datamodule import _unpadded_sampler

    shards = [list(_unpadded_sampler(range(15), "test", 2, rank)) for rank in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(15))
    assert [len(s) for s in shards] == [8, 7]
    with pytest.raises(DataError, match=r"the val split has 1 images.*data\.val_fraction"):
        _unpadded_sampler(range(1), "val", 2, 0)


def test_cache_auto_keeps_a_set_that_fits_its_share_of_memory(tmp_path: Path, caplog) -> None:
    root = make_tree(tmp_path / "images", {"good": 12, "bad": 12})
    fits = ImageFolderDataModule(root, num_workers=0, cache_in_memory="auto")
    fits.set_preprocessing(PRE)
    with caplog.at_level("INFO", logger="trainer.data.datamodule"):
        fits.setup("fit")
    assert fits.datasets["train"].images is not None and fits._workers() == 0
    assert "24 images at 32x32 take 0.00 GB decoded, within 25%" in caplog.text
    # 24 images x 3 x 32 x 32 bytes = 73,728 bytes: 1e-9 of any machine's memory is less
    tight = ImageFolderDataModule(root, num_workers=0, cache_in_memory="auto", cache_ram_share=1e-9)
    tight.set_preprocessing(PRE)
    tight.setup("fit")
    assert tight.datasets["train"].images is None


def test_cache_in_memory_takes_only_true_false_or_auto(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.cache_in_memory: 'sometimes'"):
        ImageFolderDataModule(tmp_path, cache_in_memory="sometimes")


def test_a_broken_file_is_named_when_the_set_is_cached(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "images", {"good": 6, "bad": 6})
    broken = root / "bad" / "000.png"
    broken.write_bytes(broken.read_bytes()[:40])  # a valid header, then nothing
    dm = ImageFolderDataModule(root, num_workers=0, cache_in_memory=True)
    dm.set_preprocessing(PRE)
    with pytest.raises(DataError, match=r"cannot read image '.*000.png'.*fix or remove"):
        dm.setup()
