"""The training loss: cross-entropy, or focal loss for rare classes (``model.loss``).

Focal loss (Lin et al., 2017) scales each sample's cross-entropy by ``(1 - p_true) ** gamma``:
images the model already gets right weigh little, so the many easy good boards of an imbalanced
line stop drowning the few defects. torchvision's ``sigmoid_focal_loss`` is the binary,
one-sigmoid-per-class form; this is the softmax form for one label per image.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from trainer.errors import ConfigError

LOSSES = ("cross_entropy", "focal")


def check_loss(name: str, focal_gamma: float) -> None:
    """One line naming the option when ``model.loss`` or ``model.focal_gamma`` is unusable."""
    if name not in LOSSES:
        raise ConfigError(f"model.loss: '{name}' is not one of {', '.join(LOSSES)}")
    if float(focal_gamma) < 0:
        raise ConfigError(f"model.focal_gamma: {focal_gamma} must be 0 or more")


def classification_loss(
    logits: Tensor,
    target: Tensor,
    name: str = "cross_entropy",
    label_smoothing: float = 0.0,
    focal_gamma: float = 2.0,
) -> Tensor:
    """The batch mean of ``name``'s loss (focal with gamma 0 is cross-entropy)."""
    if name == "cross_entropy":
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    per_sample = F.cross_entropy(logits, target, label_smoothing=label_smoothing, reduction="none")
    p_true = logits.float().softmax(-1).gather(1, target[:, None]).squeeze(1)
    return ((1 - p_true).clamp_min(0) ** focal_gamma * per_sample).mean()
