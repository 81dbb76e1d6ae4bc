"""Class-balanced training order (``data.sampler``): the draw, its shards under DDP, auto."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.data.test_image_folder import PRE, make_tree
from trainer.data.datamodule import ImageFolderDataModule
from trainer.data.sampler import EpochShuffle, balanced_epoch, balanced_weights
from trainer.errors import ConfigError

LABELS = [0] * 95 + [1] * 5  # a line with 95% good


def indices(sampler: EpochShuffle, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return [i for i, _ in sampler]


def test_balanced_weights_are_one_over_the_class_size() -> None:
    weights = balanced_weights([0, 0, 0, 1, 2, 2])
    assert weights == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1, 1 / 2, 1 / 2])
    assert balanced_weights([]) == []


def test_a_balanced_epoch_draws_each_class_about_equally_and_is_of_seed_and_epoch() -> None:
    sampler = EpochShuffle(len(LABELS), seed=3, weights=balanced_weights(LABELS))
    epochs = [indices(sampler, e) for e in range(40)]
    assert all(len(e) == len(LABELS) for e in epochs), "an epoch keeps the set's length"
    drawn = Counter(LABELS[i] for epoch in epochs for i in epoch)
    # 4,000 draws at p = 0.5: the rare class's share is 0.5 +- 0.025 (3.2 sigma)
    assert abs(drawn[1] / sum(drawn.values()) - 0.5) < 0.025, drawn
    assert len(set(epochs[0])) < len(LABELS), "with replacement: the rare images come back"
    torch.manual_seed(99)  # the global generator plays no part
    again = EpochShuffle(len(LABELS), seed=3, weights=balanced_weights(LABELS))
    assert indices(again, 7) == epochs[7] and epochs[7] != epochs[8]


@pytest.mark.parametrize("size", [100, 101])
def test_under_ddp_the_ranks_share_one_balanced_draw(size: int) -> None:
    """Each of two processes gets every other index of the one-process draw (as DistributedSampler
    deals a permutation), so DDP trains on the draw one process would (padded when odd)."""
    labels = (LABELS + [1])[:size]
    weights = balanced_weights(labels)
    whole = indices(EpochShuffle(size, seed=5, weights=weights), 2)
    shards = [indices(EpochShuffle(size, 5, 2, rank, weights=weights), 2) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == -(-size // 2)
    padded = whole + whole[: 2 * len(shards[0]) - size]
    assert shards[0] == padded[0::2] and shards[1] == padded[1::2]


def test_an_oversampled_epoch_draws_every_class_as_often_as_the_largest_has_images() -> None:
    assert balanced_epoch(LABELS) == 2 * 95  # counted by hand: 95 good, 5 rare, two classes
    assert balanced_epoch([0, 0, 2, 2, 2]) == 2 * 3  # an absent class (1) is not drawn
    assert balanced_epoch([]) == 0
    draws = balanced_epoch(LABELS)
    sampler = EpochShuffle(len(LABELS), seed=3, weights=balanced_weights(LABELS), draws=draws)
    epoch = indices(sampler, 0)
    assert len(sampler) == len(epoch) == 190
    # the largest class is still shown about once an epoch (95 +- 3.5 sigma of 6.9)
    assert abs(sum(LABELS[i] == 0 for i in epoch) - 95) < 24
    shards = [
        indices(EpochShuffle(len(LABELS), 3, 2, r, weights=balanced_weights(LABELS), draws=191), 0)
        for r in (0, 1)
    ]
    whole = indices(EpochShuffle(len(LABELS), 3, weights=balanced_weights(LABELS), draws=191), 0)
    padded = whole + whole[:1]
    assert shards[0] == padded[0::2] and shards[1] == padded[1::2]


def test_bad_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        EpochShuffle(3, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="need 3"):
        EpochShuffle(3, weights=[1.0])


def module(root: Path, sampler: str) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(root, batch_size=8, num_workers=0, sampler=sampler)
    dm.set_preprocessing(PRE)
    return dm


@pytest.mark.parametrize(
    ("counts", "sampler", "max_imbalance", "expected"),
    [
        ({"good": 60, "bad": 4}, "auto", 10.0, "balanced"),  # 15x above 10
        ({"good": 60, "bad": 4}, "auto", 20.0, "shuffle"),  # the run's policy decides
        ({"good": 30, "bad": 20}, "auto", 10.0, "shuffle"),
        ({"good": 60, "bad": 4}, "shuffle", 10.0, "shuffle"),  # overridable
        ({"good": 30, "bad": 20}, "balanced", 10.0, "balanced"),
    ],
)
def test_auto_balances_above_the_data_checks_threshold(
    tmp_path: Path, counts, sampler, max_imbalance, expected, caplog
) -> None:
    # train/val/test folders: the training counts are the tree's (no split by fraction)
    root = tmp_path / "images"
    make_tree(root / "train", counts, size=8)
    make_tree(root / "val", {"good": 2, "bad": 2}, size=8)
    make_tree(root / "test", {"good": 2, "bad": 2}, size=8)
    dm = module(root, sampler)
    with caplog.at_level(logging.INFO, logger="trainer.data.datamodule"):
        assert dm.choose_order(max_imbalance) == expected
    if expected == "balanced":
        assert "class-balanced" in caplog.text and "data.sampler=shuffle" in caplog.text
    dm.setup("fit")
    sampler_used = dm.train_dataloader().sampler
    assert (sampler_used.weights is not None) == (expected == "balanced")


def test_a_balanced_loader_feeds_the_rare_class_half_the_time(tmp_path: Path) -> None:
    root = tmp_path / "images"
    make_tree(root / "train", {"good": 60, "bad": 4}, size=8)
    make_tree(root / "val", {"good": 2, "bad": 2}, size=8)
    make_tree(root / "test", {"good": 2, "bad": 2}, size=8)
    dm = module(root, "balanced")
    dm.setup("fit")
    bad = dm.class_names.index("bad")
    seen = torch.cat([target for _, target in dm.train_dataloader()])
    # an oversampled epoch: 2 classes x 60 (the largest) = 120 images, half of them rare
    assert len(seen) == 120 and 44 <= int((seen == bad).sum()) <= 76  # 60 expected, 3 sigma


def test_an_unknown_sampler_is_one_line_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.sampler: 'weighted' is not one of auto"):
        ImageFolderDataModule(tmp_path, sampler="weighted")
