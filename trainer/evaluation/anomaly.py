"""An anomaly model's evaluation: scores of a split, the operating point, the pass/fail figures.

An anomaly model (``trainer.models.patchcore``) gives one score per image, high for "unlike the
good images it was fitted on". The line still needs a threshold: with defects in the validation
split it is chosen as for the classifier (fewest false alarms at ``target_recall``); with good
validation images only, which is what a team has in week one, it is the threshold that rejects
``target_false_reject`` of them (``threshold_for_false_reject``): the false-alarm rate the line
can afford, not an F1 optimum that needs defects to exist.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import BinaryPrecisionRecallCurve, BinaryROC

from trainer.errors import ConfigError
from trainer.evaluation.operating_point import between_scores, choose_operating_point, rates_at
from trainer.evaluation.predictions import true_float32
from trainer.metrics.anomaly import AnomalyMetrics
from trainer.metrics.summary import Evaluation

SCORE = "anomaly score"
PASS_FAIL = ["good", "defect"]  # the classes of an anomaly model's confusion matrix


@torch.no_grad()
def anomaly_scores(
    model: Any, loader: Any, device: torch.device, labels: Tensor
) -> tuple[Tensor, Tensor]:
    """Scores and model-order targets of every batch of ``loader``, in full float32."""
    model.to(device).eval()
    scores, target = [], []
    with true_float32():
        for images, y in loader:
            s, _ = model(model.normalize(images.to(device)))
            scores.append(s.float().cpu())
            target.append(labels[y])
    return torch.cat(scores), torch.cat(target)


def threshold_for_false_reject(good_scores: Tensor, target_false_reject: float) -> dict[str, Any]:
    """The threshold that flags at most ``target_false_reject`` of these good images.

    Placed halfway between the highest score it passes and the lowest it flags (as
    ``choose_operating_point`` does), so that each image keeps its decision in another kernel.
    """
    if not 0 <= float(target_false_reject) < 1:
        raise ConfigError(
            f"operating_point.target_false_reject: {target_false_reject} is not in [0, 1)"
        )
    ordered = good_scores.float().sort().values
    n = len(ordered)
    if n == 0:
        raise ConfigError("operating point: the validation split has no good image")
    allowed = math.floor(float(target_false_reject) * n + 1e-9)
    if allowed == 0:  # above every good score, by half the top gap (or 1% of it)
        top = float(ordered[-1])
        gap = top - float(ordered[-2]) if n > 1 else 0.0
        threshold = float(torch.tensor(top + max(gap / 2, abs(top) * 0.01, 1e-6)))
        margin = threshold - top
    else:
        threshold, margin = between_scores(ordered, float(ordered[n - allowed]))
    rejected = int((ordered >= threshold).sum()) / n
    return {"threshold": threshold, "val_false_reject": rejected, "margin": margin}


def anomaly_operating_point(
    score: Tensor,
    is_defect: Tensor,
    target_recall: float,
    target_false_reject: float,
    good_class: str,
) -> dict[str, Any]:
    """The threshold on the validation split: by recall when it holds defects, else by the
    false-reject rate of its good images."""
    if int(is_defect.sum()) > 0 and int(is_defect.sum()) < len(is_defect):
        op = choose_operating_point(score, is_defect, target_recall, good_class)
        op["rule"] = "target_recall"
    else:
        op = threshold_for_false_reject(score[~is_defect.bool()], target_false_reject)
        op.update(rule="target_false_reject", good_class=good_class)
    op["target_false_reject"] = float(target_false_reject)
    op["score"] = SCORE
    return op


def anomaly_evaluation(
    scores: Tensor,
    target: Tensor,
    class_names: list[str],
    good_class: str,
    split: str,
    threshold: float | None,
) -> Evaluation:
    """The figures of ``scores`` against class indices: image AUROC overall and per defect kind,
    and at ``threshold`` the pass/fail confusion matrix, accuracy, balanced accuracy and the
    defect class's F1 (``*_pass_fail``: not the classifier's multi-class ``acc`` and ``f1``)."""
    metrics = AnomalyMetrics(class_names, good_class, sync=False)
    metrics.update(scores, target)
    scalars = {k: float(v) for k, v in metrics.compute(split).items()}
    is_defect = target != class_names.index(good_class)
    curves: dict[str, Any] = {}
    if 0 < int(is_defect.sum()) < len(is_defect):
        curves["roc_pass_fail"] = BinaryROC()(scores, is_defect.long())
        curves["pr_pass_fail"] = BinaryPrecisionRecallCurve()(scores, is_defect.long())
    confusion = torch.zeros(2, 2, dtype=torch.long)
    if threshold is not None:
        flagged = scores >= threshold
        for truth in (0, 1):
            for said in (0, 1):
                confusion[truth, said] = int(((is_defect == truth) & (flagged == said)).sum())
        tp, fn, fp = confusion[1, 1], confusion[1, 0], confusion[0, 1]
        rates = rates_at(scores, is_defect, threshold)
        scalars[f"{split}/acc_pass_fail"] = float(confusion.diag().sum() / max(1, len(target)))
        present = [r for r in (rates["defect_recall"], 1 - rates["false_alarm_rate"]) if r == r]
        scalars[f"{split}/balanced_acc_pass_fail"] = sum(present) / len(present)
        scalars[f"{split}/f1_pass_fail"] = (
            float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else math.nan
        )
    scalars[f"{split}/num_images"] = float(len(target))
    return Evaluation(scalars, confusion, curves, None, target, scores)
