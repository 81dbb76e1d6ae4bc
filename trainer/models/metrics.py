"""The metrics that fit defect detection, from torchmetrics.

Accuracy misleads when most boards are good, so every split also reports macro F1, AUROC per
class, and the pass/fail AUROC of "good" against any defect (score = 1 - p(good)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.classification import (
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
)


class SplitMetrics(nn.Module):
    """Accuracy, macro F1 and AUROC of one split, updated per batch, computed once per epoch."""

    def __init__(self, class_names: list[str], good_class: str | None = "good") -> None:
        super().__init__()
        k = len(class_names)
        self.class_names = list(class_names)
        self.good_index = class_names.index(good_class) if good_class in class_names else None
        self.acc = MulticlassAccuracy(num_classes=k, average="micro")
        self.f1 = MulticlassF1Score(num_classes=k, average="macro")
        self.auroc = MulticlassAUROC(num_classes=k, average=None)
        self.pass_fail_auroc = BinaryAUROC() if self.good_index is not None else None

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        probs = logits.float().softmax(dim=-1)
        self.acc.update(probs, target)
        self.f1.update(probs, target)
        self.auroc.update(probs, target)
        if self.pass_fail_auroc is not None:
            self.pass_fail_auroc.update(1 - probs[:, self.good_index], target != self.good_index)

    def compute(self, prefix: str) -> dict[str, Tensor]:
        """All metrics as ``{prefix}/name`` scalars (AUROC of a class absent from the split is nan)."""
        per_class = self.auroc.compute()
        out = {
            f"{prefix}/acc": self.acc.compute(),
            f"{prefix}/f1": self.f1.compute(),
            f"{prefix}/auroc": per_class.nanmean(),
        }
        for name, value in zip(self.class_names, per_class, strict=True):
            out[f"{prefix}/auroc_{name}"] = value
        if self.pass_fail_auroc is not None:
            out[f"{prefix}/auroc_pass_fail"] = self.pass_fail_auroc.compute()
        return out

    def reset(self) -> None:
        for metric in (self.acc, self.f1, self.auroc, self.pass_fail_auroc):
            if metric is not None:
                metric.reset()
