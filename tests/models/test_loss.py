"""model.loss: focal loss against a hand computation, cross-entropy unchanged, bad options."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.errors import ConfigError
from trainer.models.loss import check_loss, classification_loss

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 0.3], [-3.0, 4.0, 0.0]])
TARGET = torch.tensor([0, 2, 0])


def test_cross_entropy_is_torchs() -> None:
    got = classification_loss(LOGITS, TARGET, "cross_entropy", label_smoothing=0.1)
    assert torch.equal(got, F.cross_entropy(LOGITS, TARGET, label_smoothing=0.1))


def test_focal_loss_is_the_formula_by_hand() -> None:
    expected = 0.0
    for row, t in zip(LOGITS.tolist(), TARGET.tolist(), strict=True):
        p = math.exp(row[t]) / sum(math.exp(v) for v in row)
        expected += -((1 - p) ** 2) * math.log(p)
    got = classification_loss(LOGITS, TARGET, "focal", focal_gamma=2.0)
    assert got.item() == pytest.approx(expected / 3, rel=1e-6)
    gamma0 = classification_loss(LOGITS, TARGET, "focal", focal_gamma=0.0)
    assert gamma0.item() == pytest.approx(F.cross_entropy(LOGITS, TARGET).item(), rel=1e-6)


def test_focal_loss_weighs_an_easy_image_less_than_cross_entropy_does() -> None:
    easy = torch.tensor([[6.0, 0.0]])
    hard = torch.tensor([[0.0, 0.0]])
    ratio = lambda x: (  # noqa: E731
        classification_loss(x, torch.tensor([0]), "focal") / F.cross_entropy(x, torch.tensor([0]))
    ).item()
    assert ratio(easy) < 1e-4 and ratio(hard) == pytest.approx(0.25)


def test_bad_loss_options_are_one_line() -> None:
    with pytest.raises(ConfigError, match="model.loss: 'dice' is not one of cross_entropy, focal"):
        check_loss("dice", 2.0)
    with pytest.raises(ConfigError, match="model.focal_gamma: -1"):
        check_loss("focal", -1)
