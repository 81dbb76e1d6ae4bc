"""Exact per-class AUROC for many classes at once.

Why not torchmetrics' own compute: ``MulticlassAUROC`` (exact mode) builds one ROC curve per
class in a Python loop, each with a device sync; for 1,000 classes that is half a second on a
CPU and as long on a GPU, every epoch, where training steps take a few dozen milliseconds. And a
class with no positive row gets AUROC 0, which pulls a mean down. Here the AUROC of every class
is the Mann-Whitney statistic (the area under the exact ROC curve, ties counted half) from one
batched sort: no loop over classes, no sync, and nan where a class has no positive or no
negative row. torchmetrics still does the updates, the state and the DDP gathering.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torchmetrics.classification import BinaryAUROC, MulticlassAUROC
from torchmetrics.utilities.data import dim_zero_cat

CHUNK_ELEMENTS = 1 << 24  # classes x rows ranked at a time (the int64 ranks of a chunk: 128 MiB)


def per_class_auroc(probs: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """AUROC of each class (one-vs-rest) from ``probs`` (rows x classes) and class indices."""
    rows = probs.shape[0]
    scores = probs.T.contiguous()
    step = max(1, CHUNK_ELEMENTS // max(rows, 1))
    out = []
    for start in range(0, num_classes, step):
        s = scores[start : start + step]
        ordered = s.sort(dim=1).values
        below = torch.searchsorted(ordered, s)  # rows scoring lower
        not_above = torch.searchsorted(ordered, s, right=True)  # rows scoring lower or equal
        rank = (below + not_above + 1).double() / 2  # 1-based, ties share their mean rank
        classes = torch.arange(start, min(start + step, num_classes), device=target.device)
        pos = target.unsqueeze(0) == classes.unsqueeze(1)  # classes x rows
        n_pos = pos.sum(dim=1).double()
        rank_sum = (rank * pos).sum(dim=1)
        out.append((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * (rows - n_pos)))
    auroc = torch.cat(out) if out else probs.new_zeros(0, dtype=torch.float64)
    return auroc.float()  # 0/0 = nan where a class has no positive or no negative row


class FastMulticlassAUROC(MulticlassAUROC):
    """torchmetrics' exact per-class AUROC (``average=None``) with the batched compute above."""

    def __init__(self, num_classes: int, **kwargs: object) -> None:
        super().__init__(num_classes=num_classes, average=None, thresholds=None, **kwargs)

    def compute(self) -> Tensor:
        return per_class_auroc(
            dim_zero_cat(self.preds), dim_zero_cat(self.target), self.num_classes
        )


class BinaryAUROCOrNan(BinaryAUROC):
    """torchmetrics' exact binary AUROC, but nan (not 0) when the targets hold one kind only.

    A split of good boards only (or defects only) has no pass/fail ranking to measure; 0 would
    read as the worst possible model and pass a ``max`` gate. The check runs inside ``compute``,
    after torchmetrics has gathered every process's rows, and costs no extra device sync.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(thresholds=None, **kwargs)

    def compute(self) -> Tensor:
        target = dim_zero_cat(self.target)
        both = (target == 1).any() & (target == 0).any()
        with warnings.catch_warnings():  # "Returning zero tensor": not what is returned here
            warnings.filterwarnings("ignore", "No (positive|negative) samples in targets")
            value = super().compute()
        return torch.where(both, value, torch.nan)
