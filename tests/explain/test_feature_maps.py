"""Stage feature maps for two families (CNN and ViT, plus ConvNeXt) and their rendering."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from PIL import Image

from trainer.explain.feature_maps import stage_features, stage_indices
from trainer.explain.render import feature_rows

# name, kwargs, expected stage names, channels, sides at a 64 px input
FAMILIES = {
    "test_resnet": (
        {},
        ["act1", "layer1", "layer2", "layer3", "layer4"],
        [32, 32, 48, 192, 96],
        [32, 16, 8, 4, 2],
    ),
    "test_vit": (
        {"dynamic_img_size": True},
        ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.5"],  # 5 of 6, last kept
        [64] * 5,
        [4] * 5,
    ),
    "test_convnext": (
        {},
        ["stages.0", "stages.1", "stages.2", "stages.3"],
        [24, 32, 48, 64],
        [16, 8, 4, 2],
    ),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_stage_features_shapes_and_order(name: str) -> None:
    kwargs, names, channels, sides = FAMILIES[name]
    net = timm.create_model(name, num_classes=3, **kwargs).eval()
    stages = stage_features(net, torch.randn(2, 3, 64, 64), max_stages=5)
    assert [s.name for s in stages] == names
    assert [tuple(s.features.shape) for s in stages] == [
        (2, c, side, side) for c, side in zip(channels, sides, strict=True)
    ]
    assert all(torch.isfinite(s.features).all() for s in stages)
    assert stages[-1].label == f"{names[-1]} · {channels[-1]} ch · {sides[-1]}x{sides[-1]}"


def test_stage_indices_keep_first_and_last() -> None:
    net = timm.create_model("test_vit", num_classes=2)
    assert stage_indices(net, 3) == [0, 2, 5]
    assert stage_indices(net, 10) == list(range(6))


def test_hook_fallback_matches_forward_intermediates() -> None:
    net = timm.create_model("test_resnet", num_classes=2).eval()
    x = torch.randn(1, 3, 64, 64)
    direct = stage_features(net, x)
    forward_intermediates = type(net).forward_intermediates
    try:
        del type(net).forward_intermediates  # a model without it: forward hooks instead
        hooked = stage_features(net, x)
    finally:
        type(net).forward_intermediates = forward_intermediates
    for a, b in zip(direct, hooked, strict=True):
        assert a.name == b.name
        torch.testing.assert_close(a.features, b.features)


def test_feature_rows_png_is_written_and_readable(tmp_path: Path) -> None:
    net = timm.create_model("test_resnet", num_classes=2).eval()
    stages = stage_features(net, torch.randn(1, 3, 64, 64))
    image = feature_rows(stages, channels=4, tile=20)
    image.save(tmp_path / "f.png")
    with Image.open(tmp_path / "f.png") as read:
        assert read.size == image.size and read.mode == "RGB"
        assert read.height >= len(stages) * 20
        assert len(set(read.getdata())) > 50  # colour maps, not a blank canvas
