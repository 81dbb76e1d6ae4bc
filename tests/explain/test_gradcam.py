"""Grad-CAM: heatmap shapes and ranges for CNN and ViT, target layers per family, bad layers."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from trainer.errors import ConfigError
from trainer.explain.gradcam import grad_cam, target_layers


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("test_resnet", {}), ("test_vit", {"dynamic_img_size": True}), ("test_convnext", {})],
)
def test_heatmaps_cover_the_input_in_unit_range(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    net = timm.create_model(name, num_classes=3, **kwargs)
    heatmaps, probs = grad_cam(net, torch.randn(2, 3, 64, 64))
    assert heatmaps.shape == (2, 64, 64) and heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0 + 1e-6
    assert heatmaps.reshape(2, -1).std(axis=1).min() > 0  # a map, not a constant
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))


def test_works_in_inference_mode_and_keeps_module_modes() -> None:
    """As in Lightning's validation loop: inference mode, a frozen backbone, BN in eval."""
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", num_classes=2).train()
    net.bn1.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        x = torch.randn(1, 3, 64, 64)
        heatmaps, _ = grad_cam(net, x)
    assert heatmaps.shape == (1, 64, 64) and heatmaps.max() > 0
    assert net.training and not net.bn1.training and net.layer1.training


def test_auto_layers_follow_the_input_size() -> None:
    net = timm.create_model("resnet18", num_classes=2)
    modules = {m: n for n, m in net.named_modules()}

    def names(layers: str, side: int) -> list[str]:
        return [modules[m] for m in target_layers(net, layers, side)]

    assert names("auto", 96) == ["layer2", "layer3"]  # 12x12 and 6x6
    assert names("auto", 224) == ["layer3", "layer4"]  # 14x14 and 7x7
    assert names("last", 96) == ["layer4"]
    assert names(["layer1"], 96) == ["layer1"]


def test_vit_target_is_the_last_blocks_norm() -> None:
    net = timm.create_model("test_vit", num_classes=2, dynamic_img_size=True)
    assert target_layers(net, "auto", 64) == [net.blocks[-1].norm1]


def test_unknown_layer_is_a_config_error() -> None:
    net: nn.Module = timm.create_model("test_resnet", num_classes=2)
    with pytest.raises(ConfigError, match=r"cam_layers: \['layer9'\].*layer4"):
        grad_cam(net, torch.randn(1, 3, 64, 64), layers=["layer9"])
