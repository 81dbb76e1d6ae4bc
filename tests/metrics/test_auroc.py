"""The batched AUROC must give torchmetrics' exact figures, and nan where AUROC is undefined."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAUROC

from trainer.metrics import auroc as auroc_module
from trainer.metrics.auroc import FastMulticlassAUROC, per_class_auroc


def _scores(rows: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    probs = torch.randn(rows, classes, generator=g).softmax(-1)
    probs = (probs * 20).round() / 20  # many ties, which the ROC curve counts half
    return probs, torch.randint(0, classes, (rows,), generator=g)


@pytest.mark.parametrize("chunk", [1 << 24, 7])  # one chunk, and several chunks of classes
def test_equals_torchmetrics_exact_auroc(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(auroc_module, "CHUNK_ELEMENTS", chunk)
    probs, target = _scores(300, 10)
    metric = FastMulticlassAUROC(num_classes=10)
    metric.update(probs[:100], target[:100])
    metric.update(probs[100:], target[100:])
    expected = MulticlassAUROC(num_classes=10, average=None)(probs, target)
    assert torch.allclose(metric.compute(), expected, atol=1e-6)


def test_perfect_and_inverted_scores() -> None:
    target = torch.tensor([0, 0, 1, 1])
    right = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert per_class_auroc(right, target, 2).tolist() == [1.0, 1.0]
    assert per_class_auroc(right.flip(1), target, 2).tolist() == [0.0, 0.0]


def test_undefined_classes_are_nan_not_zero() -> None:
    """torchmetrics returns 0 for a class without positives, which drags a mean AUROC down."""
    probs, _ = _scores(6, 3)
    auroc = per_class_auroc(probs, torch.tensor([0, 1, 0, 1, 0, 1]), 3)
    assert auroc[2].isnan() and not auroc[:2].isnan().any()
    only_class_0 = per_class_auroc(probs, torch.zeros(6, dtype=torch.long), 3)
    assert only_class_0.isnan().all()  # no negatives for class 0, no positives for the others
