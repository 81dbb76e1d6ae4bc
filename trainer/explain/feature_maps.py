"""The activations of each backbone stage, from low to high level.

timm's ``forward_intermediates`` gives every stage's output in one pass, in NCHW also for
vision transformers, for all the families we ship (ResNet, EfficientNet, MobileNet, ConvNeXt,
ViT). A model without it falls back to forward hooks on the modules its ``feature_info`` names,
which is what timm's own ``FeatureHookNet`` does. A ViT's blocks all have the same resolution;
``max_stages`` keeps an evenly spaced subset (always the last) so a grid stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class StageMap:
    """One stage's activations (N, C, H, W) and the name of the module that produced them."""

    name: str
    features: Tensor

    @property
    def label(self) -> str:
        _, c, h, w = self.features.shape
        return f"{self.name} · {c} ch · {h}x{w}"


def stage_indices(net: nn.Module, max_stages: int = 5, stages: int | None = None) -> list[int]:
    """Indices into ``net.feature_info`` of the stages to show (all when there are few); only
    the first ``stages`` of them when given (a backbone cut after its last used stage)."""
    count = len(net.feature_info) if stages is None else min(stages, len(net.feature_info))
    if count <= max_stages:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(count - 1, 0, max_stages)})


def stage_features(
    net: nn.Module, x: Tensor, max_stages: int = 5, stages: int | None = None
) -> list[StageMap]:
    """Each chosen stage's activations for normalised images ``x`` (N, 3, H, W), low to high.

    Args:
        net: a timm model (``ImageClassifier.net``), with its trained head.
        x: normalised float images.
        max_stages: at most this many stages (evenly spaced, the last always among them).
        stages: the stages that exist (None: all of ``feature_info``); an anomaly model prunes
            its backbone after its last feature layer, whose later stages then repeat it.
    """
    indices = stage_indices(net, max_stages, stages)
    names = [net.feature_info[i]["module"] for i in indices]
    with torch.no_grad():
        if hasattr(net, "forward_intermediates"):
            maps = net.forward_intermediates(x, indices=indices, intermediates_only=True)
        else:
            maps = _hooked(net, x, names)
    return [StageMap(n, m.detach().float().cpu()) for n, m in zip(names, maps, strict=True)]


def _hooked(net: nn.Module, x: Tensor, names: list[str]) -> list[Tensor]:
    modules = dict(net.named_modules())
    out: dict[str, Tensor] = {}
    handles = [
        modules[n].register_forward_hook(lambda _m, _i, o, n=n: out.__setitem__(n, o))
        for n in names
    ]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return [out[n] for n in names]
