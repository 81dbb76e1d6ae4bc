"""Grad-CAM heatmaps over the input for the predicted class, with pytorch-grad-cam.

Why pytorch-grad-cam and not captum: it is a dependency already (captum is not), it is well
kept, and it does what we would otherwise write by hand around captum's ``LayerGradCam``: it
upsamples each map to the input, scales it to [0, 1] per image, averages several target layers
natively, and takes a ``reshape_transform`` that turns a ViT's tokens back into a grid.

Target layers, per family (``layers="auto"``):
    CNNs (ResNet, ConvNeXt, EfficientNet...): the last two stages of ``feature_info`` whose maps
        are at least ``MIN_CAM_SIDE`` cells wide, averaged. The last stage is the textbook
        choice at 224 px (7x7), but at the default 96 px it is 3x3: one cell covers a third of
        the board and cannot point at a 6-pixel solder bridge (README: pointing game). At
        96 px this picks layer2 and layer3 of a ResNet (12x12 and 6x6); at 224 px layer3 and
        layer4 (14x14 and 7x7).
    ViTs: ``blocks[-1].norm1`` with the prefix (class) tokens dropped and the patch tokens
        reshaped to their grid. Not the last block's output: with class-token pooling only the
        class token reaches the head, so the patch tokens there get no gradient.
``layers="last"`` takes the last stage only; a list of module names takes those modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from trainer.errors import ConfigError


def is_vit(net: nn.Module) -> bool:
    """A transformer whose blocks work on tokens (timm's VisionTransformer and kin)."""
    return (
        hasattr(net, "patch_embed") and hasattr(net, "blocks") and hasattr(net, "num_prefix_tokens")
    )


MIN_CAM_SIDE = 4


def target_layers(
    net: nn.Module, layers: str | Sequence[str] = "auto", input_side: int = 224
) -> list[nn.Module]:
    """The modules whose activations and gradients make the heatmap (see the module docstring)."""
    modules = dict(net.named_modules())
    if isinstance(layers, str) and layers in ("auto", "last"):
        if is_vit(net):
            return [net.blocks[-1].norm1]
        stages = list(net.feature_info)
        if layers == "last":
            names = [stages[-1]["module"]]
        else:
            fine = [f for f in stages if input_side // f["reduction"] >= MIN_CAM_SIDE]
            names = [f["module"] for f in (fine or stages[:1])[-2:]]
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
    missing = [n for n in names if n not in modules]
    if missing:
        stages = ", ".join(f["module"] for f in net.feature_info)
        raise ConfigError(
            f"cam_layers: {missing} are not modules of this network; use auto, last, or some of: "
            f"{stages}"
        )
    return [modules[n] for n in names]


def target_layer_names(
    net: nn.Module, layers: str | Sequence[str] = "auto", input_side: int = 224
) -> list[str]:
    """The names of ``target_layers``, for captions."""
    names = {id(m): n for n, m in net.named_modules()}
    return [names[id(m)] for m in target_layers(net, layers, input_side)]


def token_reshape(net: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """ViT tokens (N, T, C) -> (N, C, h, w) for square inputs; None for CNNs (already NCHW)."""
    if not is_vit(net):
        return None
    prefix = int(net.num_prefix_tokens)

    def reshape(tokens: Tensor) -> Tensor:
        patches = tokens[:, prefix:, :]
        side = int(round(patches.shape[1] ** 0.5))
        return patches.reshape(patches.shape[0], side, side, patches.shape[2]).permute(0, 3, 1, 2)

    return reshape


@contextlib.contextmanager
def _modes_kept(net: nn.Module) -> Iterator[None]:
    """pytorch-grad-cam puts the model in eval mode; give every module its own mode back."""
    modes = [(m, m.training) for m in net.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.train(training)


def grad_cam(
    net: nn.Module,
    x: Tensor,
    layers: str | Sequence[str] = "auto",
    classes: Sequence[int] | None = None,
) -> tuple[np.ndarray, Tensor]:
    """Heatmaps (N, H, W) in [0, 1] at the input's size, and the softmax probabilities (N, K).

    Works inside Lightning's validation loop too (it lifts inference mode and enables grad).

    Args:
        net: the timm model (``ImageClassifier.net``), with its trained head.
        x: normalised float images (N, 3, H, W).
        layers: "auto", "last" or module names (see the module docstring).
        classes: the class to explain per image; None explains the predicted class.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = None if classes is None else [ClassifierOutputTarget(int(c)) for c in classes]
    with torch.inference_mode(False), torch.enable_grad(), _modes_kept(net):
        inputs = x.detach().clone().requires_grad_(True)  # gradients also reach a frozen backbone
        layer_list = target_layers(net, layers, int(x.shape[-1]))
        with GradCAM(net, layer_list, reshape_transform=token_reshape(net)) as cam:
            heatmaps = cam(input_tensor=inputs, targets=targets)
            probs = cam.outputs.detach().float().softmax(dim=1).cpu()
    return np.nan_to_num(heatmaps.astype(np.float32)), probs
