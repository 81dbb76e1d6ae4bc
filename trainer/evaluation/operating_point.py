"""The pass/fail operating point: the defect-score threshold that meets a target defect recall.

On a production line a missed defect costs far more than a false alarm, so the threshold is
chosen on the validation split as the one with the fewest false alarms among those that catch
at least ``target_recall`` of the defects (torchmetrics' ``BinarySpecificityAtSensitivity``).
An image is called defective when ``1 - p(good) >= threshold``.

The result is stored in the checkpoint as ``trainer_metadata["operating_point"]``; export and
serving code read exactly these keys:
``{"threshold", "target_recall", "val_recall", "good_class", "score": "1 - p(good)"}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import BinarySpecificityAtSensitivity

from trainer.errors import ConfigError, DataError
from trainer.utils.atomic import atomic_write

SCORE = "1 - p(good)"


def rates_at(score: Tensor, is_defect: Tensor, threshold: float) -> dict[str, float]:
    """Defect recall and false-alarm rate (good images flagged) of ``score >= threshold``.

    Written out rather than torchmetrics' BinaryRecall(threshold=...), which flags
    ``score > threshold``: the operating point's rule is ``>=``, as its ROC's thresholds are.
    """
    flagged = score >= threshold
    defects, goods = is_defect.bool(), ~is_defect.bool()
    recall = flagged[defects].float().mean() if defects.any() else torch.tensor(float("nan"))
    false_alarm = flagged[goods].float().mean() if goods.any() else torch.tensor(float("nan"))
    return {"defect_recall": float(recall), "false_alarm_rate": float(false_alarm)}


def choose_operating_point(
    score: Tensor, is_defect: Tensor, target_recall: float, good_class: str
) -> dict[str, Any]:
    """The threshold with the fewest false alarms whose defect recall is at least the target.

    Args:
        score: defect scores ``1 - p(good)`` of the validation images.
        is_defect: 1 where the image is not of the good class.
        target_recall: the defect recall the line needs, in (0, 1].
        good_class: the pass class (recorded with the threshold).
    """
    if not 0 < float(target_recall) <= 1:
        raise ConfigError(f"operating_point.target_recall: {target_recall} is not in (0, 1]")
    is_defect = is_defect.long()
    if not 0 < int(is_defect.sum()) < len(is_defect):
        raise DataError(
            "operating point: the validation split needs both good and defective images "
            f"(it has {int(is_defect.sum())} defective of {len(is_defect)})"
        )
    score = score.float()
    metric = BinarySpecificityAtSensitivity(min_sensitivity=float(target_recall))
    _, at_score = metric(score, is_defect)
    threshold, margin = between_scores(score, float(at_score))
    return {
        "threshold": threshold,
        "target_recall": float(target_recall),
        "val_recall": rates_at(score, is_defect, threshold)["defect_recall"],
        "good_class": good_class,
        "score": SCORE,
        "margin": margin,
    }


def between_scores(score: Tensor, at_score: float) -> tuple[float, float]:
    """The threshold halfway between ``at_score`` (a validation image's score) and the next
    lower score, and its distance to either.

    torchmetrics returns a threshold equal to one image's score, so that image sits on the
    boundary and the last bit of a float decides it: another kernel (the bundle's ONNX Runtime,
    a GPU) flips it. Halfway, every validation image is decided as before, with ``margin`` to
    spare (recorded with the threshold).
    """
    below = score[score < at_score]
    lower = float(below.max()) if len(below) else 0.0
    # a float32 number: the scores are float32 here and in the bundle, so no rounding moves it
    threshold = float(torch.tensor((at_score + lower) / 2, dtype=torch.float32))
    if not lower < threshold < at_score:
        return at_score, 0.0  # adjacent floats (or no lower score): nothing lies between them
    return threshold, min(at_score - threshold, threshold - lower)


def write_to_checkpoint(ckpt_path: str | Path, operating_point: dict[str, Any]) -> None:
    """Add ``trainer_metadata["operating_point"]`` to a checkpoint, atomically.

    Through ``atomic_write``: a crash never leaves half a checkpoint, the bytes are on disk
    before the swap, and the checkpoint keeps its mode (not a temporary file's 0600).
    """
    path = Path(ckpt_path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt.setdefault("trainer_metadata", {})["operating_point"] = dict(operating_point)
    atomic_write(path, lambda f: torch.save(ckpt, f))
