"""SplitMetrics buffers batches and feeds torchmetrics once: the figures must not change."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score

from trainer.metrics.split import SplitMetrics

CLASSES = ["good", "missing", "misplaced"]


def _batches(n: int = 10, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(size, 3, generator=g), torch.randint(0, 3, (size,), generator=g))
        for _ in range(n)
    ]


def test_buffered_metrics_equal_torchmetrics_per_batch() -> None:
    ours = SplitMetrics(CLASSES, flush_rows=40)  # several flushes and a remainder
    acc, f1 = MulticlassAccuracy(num_classes=3, average="micro"), MulticlassF1Score(num_classes=3)
    auroc = MulticlassAUROC(num_classes=3, average=None)
    for logits, target in _batches():
        ours.update(logits, target)
        probs = logits.softmax(-1)
        acc.update(probs, target), f1.update(probs, target), auroc.update(probs, target)
    out = ours.compute("val")
    assert torch.isclose(out["val/acc"], acc.compute())
    assert torch.isclose(out["val/f1"], f1.compute())
    assert torch.allclose(torch.stack([out[f"val/auroc_{c}"] for c in CLASSES]), auroc.compute())
    logits, target = torch.cat([b[0] for b in _batches()]), torch.cat([b[1] for b in _batches()])
    expected = roc_auc_score(target != 0, 1 - logits.softmax(-1)[:, 0])
    assert float(out["val/auroc_pass_fail"]) == pytest.approx(expected, abs=1e-6)


def test_pass_fail_auroc_with_ties_equals_scikit_learn() -> None:
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(5, 3, generator=g)
    logits = rows[torch.randint(0, 5, (200,), generator=g)]  # 5 distinct rows: many ties
    target = torch.randint(0, 3, (200,), generator=g)
    ours = SplitMetrics(CLASSES, flush_rows=64)
    for start in range(0, 200, 50):
        ours.update(logits[start : start + 50], target[start : start + 50])
    score = 1 - logits.softmax(-1)[:, 0]
    assert len(score.unique()) == 5
    expected = roc_auc_score(target != 0, score)
    assert float(ours.compute("val")["val/auroc_pass_fail"]) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("kind", ["good", "defect"])
def test_pass_fail_auroc_of_one_kind_only_is_nan(kind: str) -> None:
    """AUROC needs both good and defective images; torchmetrics says 0, which reads as worst."""
    logits, _ = _batches(1)[0]
    target = torch.zeros(16, dtype=torch.long) if kind == "good" else torch.randint(1, 3, (16,))
    for auroc_last_rows in (None, 8):
        ours = SplitMetrics(CLASSES, auroc_last_rows=auroc_last_rows)
        ours.update(logits, target)
        assert ours.compute("test")["test/auroc_pass_fail"].isnan(), auroc_last_rows


def test_auroc_last_rows_uses_only_the_newest_rows() -> None:
    batches = _batches()
    ours = SplitMetrics(CLASSES, auroc_last_rows=32, flush_rows=40)
    for logits, target in batches:
        ours.update(logits, target)
    out = ours.compute("train")
    logits = torch.cat([b[0] for b in batches])[-32:]
    target = torch.cat([b[1] for b in batches])[-32:]
    expected = MulticlassAUROC(num_classes=3, average=None)(logits.softmax(-1), target)
    assert torch.allclose(torch.stack([out[f"train/auroc_{c}"] for c in CLASSES]), expected)
    all_acc = MulticlassAccuracy(num_classes=3, average="micro")(
        torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    )
    assert torch.isclose(out["train/acc"], all_acc)  # accuracy still sees every row


def test_reset_forgets_buffered_rows() -> None:
    ours = SplitMetrics(CLASSES, auroc_last_rows=32)
    logits, target = _batches(1)[0]
    ours.update(logits * 100, (logits.argmax(-1) + 1) % 3)  # all wrong
    ours.reset()
    ours.update(logits * 100, logits.argmax(-1))  # all right
    assert ours.compute("val")["val/acc"] == 1.0
