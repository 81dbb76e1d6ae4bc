"""The preset augmentations of trainer/data/transforms.py, against torch's own operations."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from trainer.data.transforms import RandomQuarterTurn, RandomResizedCropSameSize

IMAGE = torch.arange(3 * 4 * 4, dtype=torch.uint8).reshape(3, 4, 4)


def test_a_quarter_turn_is_one_of_the_four_exact_rotations() -> None:
    turns = [torch.rot90(IMAGE, k, dims=(-2, -1)) for k in range(4)]
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = RandomQuarterTurn()(IMAGE)
        seen.add(next(k for k, t in enumerate(turns) if torch.equal(out, t)))
    assert seen == {0, 1, 2, 3}


def test_a_non_square_image_is_only_turned_by_half_turns() -> None:
    wide = IMAGE[:, :2, :]
    for seed in range(20):
        torch.manual_seed(seed)
        out = RandomQuarterTurn()(wide)
        assert torch.equal(out, wide) or torch.equal(out, torch.rot90(wide, 2, dims=(-2, -1)))


def test_the_crop_is_resized_back_to_the_image_size() -> None:
    image = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8)
    crop = RandomResizedCropSameSize(scale=(0.5, 0.5), ratio=(1.0, 1.0))
    torch.manual_seed(0)
    out = crop(image)
    assert out.shape == image.shape and out.dtype == torch.uint8
    torch.manual_seed(0)
    params = crop.crop.make_params([image])
    side = params["height"]
    assert params["width"] == side and abs(side * side - 0.5 * 32 * 48) <= 2 * side
    expected = TF.resized_crop(
        image, params["top"], params["left"], side, side, size=[32, 48], antialias=True
    )
    assert torch.equal(out, expected)


def test_a_bad_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCropSameSize(scale=(0.0, 1.2))
