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

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import BinarySpecificityAtSensitivity

from trainer.errors import ConfigError, DataError

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
    metric = BinarySpecificityAtSensitivity(min_sensitivity=float(target_recall))
    _, threshold = metric(score.float(), is_defect)
    threshold = float(threshold)
    return {
        "threshold": threshold,
        "target_recall": float(target_recall),
        "val_recall": rates_at(score, is_defect, threshold)["defect_recall"],
        "good_class": good_class,
        "score": SCORE,
    }


def write_to_checkpoint(ckpt_path: str | Path, operating_point: dict[str, Any]) -> None:
    """Add ``trainer_metadata["operating_point"]`` to a checkpoint, atomically.

    Written to a temporary file in the same folder and moved over the original with
    ``os.replace``, so a crash never leaves half a checkpoint.
    """
    path = Path(ckpt_path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt.setdefault("trainer_metadata", {})["operating_point"] = dict(operating_point)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
