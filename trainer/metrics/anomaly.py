"""The figures of an anomaly model on a split: how well its score ranks defects above good images.

An anomaly model gives one score per image and never names a defect kind, so its metrics are
binary: the image AUROC of good against any defect (``auroc_pass_fail``, the name the
classifier's pass/fail AUROC has, so that checkpoints, sweeps, gates and the run history compare
the two), and the AUROC of good against each defect kind alone (``auroc_<kind>``). nan where a
split has nothing to rank (no good or no defective image). torchmetrics' exact AUROC, synced
across DDP processes unless ``sync=False``.
"""

from __future__ import annotations

from torch import Tensor, nn

from trainer.metrics.auroc import BinaryAUROCOrNan


class AnomalyMetrics(nn.Module):
    """Image AUROC, overall and per defect kind, of anomaly scores against class indices."""

    def __init__(self, class_names: list[str], good_class: str, sync: bool = True) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.good_index = self.class_names.index(good_class)
        kw = {"sync_on_compute": sync}
        self.overall = BinaryAUROCOrNan(**kw)
        self.kinds = nn.ModuleDict(
            {
                name: BinaryAUROCOrNan(**kw)
                for i, name in enumerate(self.class_names)
                if i != self.good_index
            }
        )

    def update(self, scores: Tensor, target: Tensor) -> None:
        scores, target = scores.detach().float(), target.detach()
        good = target == self.good_index
        self.overall.update(scores, ~good)
        for name, metric in self.kinds.items():
            kind = target == self.class_names.index(name)
            mask = good | kind
            metric.update(scores[mask], kind[mask])

    def compute(self, prefix: str) -> dict[str, Tensor]:
        out = {f"{prefix}/auroc_pass_fail": self.overall.compute()}
        for name, metric in self.kinds.items():
            out[f"{prefix}/auroc_{name}"] = metric.compute()
        return out

    def reset(self) -> None:
        self.overall.reset()
        for metric in self.kinds.values():
            metric.reset()
