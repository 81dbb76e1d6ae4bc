"""The metrics that fit defect detection, from torchmetrics: per split during training
(``split``), every figure of a report (``summary``), the exact batched AUROC (``auroc``).
"""

from trainer._exports import lazy

_EXPORTS = {
    "SplitMetrics": "split",
    "MeanLoss": "split",
    "Evaluation": "summary",
    "compute_metrics": "summary",
    "defect_scores": "summary",
    "ECE_BINS": "summary",
    "FastMulticlassAUROC": "auroc",
    "BinaryAUROCOrNan": "auroc",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
