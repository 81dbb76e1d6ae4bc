"""The metrics that fit defect detection, from torchmetrics.

Accuracy misleads when most boards are good, so every split also reports macro F1, AUROC per
class, and the pass/fail AUROC of "good" against any defect (score = 1 - p(good)).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from trainer.metrics.auroc import BinaryAUROCOrNan, FastMulticlassAUROC


class SplitMetrics(nn.Module):
    """Accuracy, macro F1 and AUROC of one split, computed once per epoch.

    Batches are only buffered on their device during the epoch and fed to torchmetrics in large
    chunks: each torchmetrics update waits for the GPU (bincount, range checks), and one such wait
    per step keeps the CPU from queueing the next step, where a raw loop never waits.
    """

    def __init__(
        self,
        class_names: list[str],
        good_class: str | None = "good",
        auroc_last_rows: int | None = None,
        flush_rows: int = 65536,
        sync: bool = True,
    ) -> None:
        super().__init__()
        k = len(class_names)
        self.class_names = list(class_names)
        self.good_index = class_names.index(good_class) if good_class in class_names else None
        # sync=False: one process holds the whole split (a report on rank zero while the other
        # ranks have gone): gathering from them would wait for processes that never answer.
        kw = {"sync_on_compute": sync}
        self.acc = MulticlassAccuracy(num_classes=k, average="micro", **kw)
        self.f1 = MulticlassF1Score(num_classes=k, average="macro", **kw)
        self.auroc = FastMulticlassAUROC(num_classes=k, **kw)
        self.pass_fail_auroc = BinaryAUROCOrNan(**kw) if self.good_index is not None else None
        # Exact AUROC keeps every score: on a large split that is gigabytes. auroc_last_rows
        # bounds it to the split's last N rows of each process (None: all). torchmetrics' binned
        # AUROC was no way out: its update is slower.
        self.auroc_last_rows = auroc_last_rows
        self._auroc_probs: Tensor | None = None
        self._auroc_targets: Tensor | None = None
        self.flush_rows = flush_rows
        self._probs: list[Tensor] = []
        self._targets: list[Tensor] = []
        self._rows = 0

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        self._probs.append(logits.detach().float().softmax(dim=-1))
        self._targets.append(target.detach())
        self._rows += len(target)
        if self._rows >= self.flush_rows:  # bounded memory on large splits
            self._flush()

    def _flush(self) -> None:
        if not self._probs:
            return
        probs, target = torch.cat(self._probs), torch.cat(self._targets)
        self._probs, self._targets, self._rows = [], [], 0
        self.acc.update(probs, target)
        self.f1.update(probs, target)
        if self.auroc_last_rows is None:
            self._update_auroc(probs, target)
            return
        if self._auroc_probs is not None:  # keep only the newest rows until compute()
            probs, target = (
                torch.cat([self._auroc_probs, probs]),
                torch.cat([self._auroc_targets, target]),
            )
        # clone: a view would keep the whole concatenated chunk alive
        self._auroc_probs = probs[-self.auroc_last_rows :].clone()
        self._auroc_targets = target[-self.auroc_last_rows :].clone()

    def _update_auroc(self, probs: Tensor, target: Tensor) -> None:
        self.auroc.update(probs, target)
        if self.pass_fail_auroc is not None:
            self.pass_fail_auroc.update(1 - probs[:, self.good_index], target != self.good_index)

    def compute(self, prefix: str, per_class: bool = True) -> dict[str, Tensor]:
        """All metrics as ``{prefix}/name`` scalars; ``per_class=False`` leaves out the per-class
        AUROCs (their mean stays). An AUROC with nothing to rank is nan: a class absent from the
        split, or the pass/fail AUROC of a split of good images only (or defects only)."""
        self._flush()
        if self._auroc_probs is not None:
            self._update_auroc(self._auroc_probs, self._auroc_targets)
            self._auroc_probs = self._auroc_targets = None
        per_class_auroc = self.auroc.compute()
        out = {
            f"{prefix}/acc": self.acc.compute(),
            f"{prefix}/f1": self.f1.compute(),
            f"{prefix}/auroc": per_class_auroc.nanmean(),
        }
        for name, value in zip(self.class_names, per_class_auroc, strict=True) if per_class else ():
            out[f"{prefix}/auroc_{name}"] = value
        if self.pass_fail_auroc is not None:
            out[f"{prefix}/auroc_pass_fail"] = self.pass_fail_auroc.compute()
        return out

    def reset(self) -> None:
        self._probs, self._targets, self._rows = [], [], 0
        self._auroc_probs = self._auroc_targets = None
        for metric in (self.acc, self.f1, self.auroc, self.pass_fail_auroc):
            if metric is not None:
                metric.reset()


class MeanLoss(Metric):
    """The mean loss per image of an epoch: batch means weighted by batch size, summed over
    processes, so DDP gives what one process computes (Lightning's ``sync_dist`` averages the
    processes' means, whatever their sizes).

    Not torchmetrics' MeanMetric: its NaN check reads the value at every update (a device sync),
    and with the check off (``nan_strategy="disable"``, torchmetrics 1.9) it drops the weights.
    """

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, batch_mean: Tensor, batch_size: int) -> None:
        self.total += batch_mean.detach().float() * batch_size  # a Python number: no host copy
        self.count += batch_size

    def compute(self) -> Tensor:
        return self.total / self.count
