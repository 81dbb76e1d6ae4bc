"""Every number an evaluation reports, from torchmetrics, over one split's probabilities.

The metrics the test step logs (``trainer.metrics.split.SplitMetrics``: ``acc``, ``f1``,
``auroc``, ``auroc_<class>``, ``auroc_pass_fail``) are computed by that same class here, so an
evaluation of the best checkpoint repeats the numbers of the test step at the end of training.
The rest adds what accuracy hides when most boards are good: balanced accuracy (macro recall),
precision, recall and F1 per class, calibration (expected calibration error), the confusion
matrix and the ROC and precision-recall curves.

A folder may hold a subset of the model's classes, so a class can be absent from the targets.
Its recall is undefined: nan, and macro recall (= balanced accuracy) averages the classes
present, as scikit-learn's ``balanced_accuracy_score`` does. Its precision and F1 are 0 when the
model called some image that class (false calls) and nan when it never did; macro precision and
F1 average the classes that occur in the targets or the predictions (scikit-learn's default
labels, torchmetrics' macro average). A class in the targets that is never predicted keeps
precision 0 (scikit-learn's ``zero_division=0``), so never calling a class does not flatter
macro precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import (
    BinaryPrecisionRecallCurve,
    BinaryROC,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassPrecisionRecallCurve,
    MulticlassRecall,
    MulticlassROC,
)

from trainer.metrics.split import SplitMetrics

ECE_BINS = 15  # torchmetrics' default; the reliability diagram uses the same bins


@dataclass
class Evaluation:
    """Scalars (``{split}/name``) and the arrays the figures are drawn from."""

    scalars: dict[str, float]
    confusion: Tensor  # (K, K) counts, rows = true class
    curves: dict[str, Any] = field(default_factory=dict)  # name -> (x, y) per class or pass/fail
    probs: Tensor | None = None
    target: Tensor | None = None
    scores: Tensor | None = None  # defect score of each image (pass/fail), when there is one


def defect_scores(probs: Tensor, good_index: int) -> Tensor:
    """The pass/fail score of every image: ``1 - p(good)`` (high means defect)."""
    return 1 - probs[:, good_index]


def compute_metrics(
    logits: Tensor, target: Tensor, class_names: list[str], good_class: str | None, split: str
) -> Evaluation:
    """All metrics of ``logits`` (N, K) against ``target`` (N,) as ``{split}/name`` scalars.

    Args:
        logits: the model's outputs in its class order (log-probabilities work too).
        target: true class indices in the same order.
        class_names: the model's classes.
        good_class: the pass class; None (or absent) skips the pass/fail metrics.
        split: prefix of every name, e.g. ``test``.
    """
    k = len(class_names)
    logits, target = logits.float(), target.long()
    probs = logits.softmax(dim=-1)
    shared = SplitMetrics(class_names, good_class, sync=False)  # this process has it all
    shared.update(logits, target)  # the very inputs of the test step
    scalars = {name: float(v) for name, v in shared.compute(split).items()}

    confusion = MulticlassConfusionMatrix(num_classes=k)(probs, target)
    in_target, predicted = confusion.sum(dim=1) > 0, confusion.sum(dim=0) > 0
    # torchmetrics' per-class values say 0 where a ratio is 0/0; nan marks the classes that
    # have nothing to measure (module docstring), and the macro means skip them.
    per_class = {
        "precision": (MulticlassPrecision(num_classes=k, average=None), in_target | predicted),
        "recall": (MulticlassRecall(num_classes=k, average=None), in_target),
        "f1": (MulticlassF1Score(num_classes=k, average=None), in_target | predicted),
    }
    for name, (metric, defined) in per_class.items():
        values = metric(probs, target).where(defined, torch.nan)
        for cls, value in zip(class_names, values, strict=True):
            scalars[f"{split}/{name}_{cls}"] = float(value)
        if name != "f1":  # macro F1 is the test step's test/f1 (torchmetrics: the same mean)
            scalars[f"{split}/{name}"] = float(values.nanmean())
    scalars[f"{split}/balanced_acc"] = scalars[f"{split}/recall"]
    ece = MulticlassCalibrationError(num_classes=k, n_bins=ECE_BINS, norm="l1")
    scalars[f"{split}/ece"] = float(ece(probs, target))

    curves: dict[str, Any] = {
        "roc": MulticlassROC(num_classes=k)(probs, target),
        "pr": MulticlassPrecisionRecallCurve(num_classes=k)(probs, target),
    }
    if good_class in class_names:
        good = class_names.index(good_class)
        score, is_defect = defect_scores(probs, good), (target != good).long()
        if 0 < int(is_defect.sum()) < len(is_defect):
            curves["roc_pass_fail"] = BinaryROC()(score, is_defect)
            curves["pr_pass_fail"] = BinaryPrecisionRecallCurve()(score, is_defect)
    scalars[f"{split}/num_images"] = float(len(target))
    scores = (
        defect_scores(probs, class_names.index(good_class)) if good_class in class_names else None
    )
    return Evaluation(scalars, confusion, curves, probs, target, scores)


def always_class_logits(n: int, num_classes: int, index: int) -> Tensor:
    """Logits of a model that always says class ``index`` with full confidence."""
    logits = torch.full((n, num_classes), -1e4)
    logits[:, index] = 0.0
    return logits
