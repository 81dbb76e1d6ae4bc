"""The figures of an evaluation: confusion matrix, ROC and PR curves, reliability diagram.

matplotlib's object API (``Figure`` rendered by the Agg canvas): no display, no pyplot state, and
no global backend switch for a notebook that imports this. Each function returns the Figure so
that the caller can both save it as PNG and log it to TensorBoard (``SummaryWriter.add_figure``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor


def confusion_matrix_figure(confusion: Tensor, class_names: list[str], title: str) -> Figure:
    """Counts in every cell, rows = true class, shaded by the share of the row."""
    counts = confusion.cpu().numpy().astype(int)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    k = len(class_names)
    fig = Figure(figsize=(2.2 + 1.1 * k, 1.8 + 1.0 * k), layout="constrained")
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            color = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", color=color, fontsize=11)
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def _plot_curves(ax: Any, curves: Any, names: list[str], swap: bool = False) -> None:
    xs, ys, _ = curves
    for name, x, y in zip(names, xs, ys, strict=True):
        x, y = (y, x) if swap else (x, y)
        ax.plot(x.cpu().numpy(), y.cpu().numpy(), label=name, lw=1.5)


def roc_pr_figure(
    curves: dict[str, Any], class_names: list[str], scalars: dict[str, float], split: str
) -> Figure:
    """ROC (left) and precision-recall (right), one-vs-rest per class plus pass/fail."""
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    roc, pr = fig.subplots(1, 2)
    labels = [
        f"{c} (AUROC {scalars.get(f'{split}/auroc_{c}', float('nan')):.3f})" for c in class_names
    ]
    if "roc" in curves:  # an anomaly model has the pass/fail curves only
        _plot_curves(roc, curves["roc"], labels)
        _plot_curves(pr, curves["pr"], class_names, swap=True)
    if "roc_pass_fail" in curves:
        auc = scalars.get(f"{split}/auroc_pass_fail", float("nan"))
        fpr, tpr, _ = curves["roc_pass_fail"]
        roc.plot(fpr.numpy(), tpr.numpy(), "k--", lw=2, label=f"pass/fail (AUROC {auc:.3f})")
        precision, recall, _ = curves["pr_pass_fail"]
        pr.plot(recall.numpy(), precision.numpy(), "k--", lw=2, label="pass/fail (defect)")
    roc.plot([0, 1], [0, 1], color="0.7", lw=1)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({split})")
    pr.set(xlabel="recall", ylabel="precision", title=f"precision-recall ({split})")
    for ax in (roc, pr):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8, loc="lower right" if ax is roc else "best")
        ax.grid(alpha=0.3)
    return fig


def reliability_figure(probs: Tensor, target: Tensor, n_bins: int, ece: float) -> Figure:
    """Accuracy against confidence in ``n_bins`` equal bins (torchmetrics' ECE bins).

    torchmetrics returns only the ECE, not its bins, so the bins are recomputed here the same
    way (top-1 confidence, equal-width bins over [0, 1]).
    """
    conf, pred = probs.max(dim=1)
    conf, correct = conf.numpy(), (pred == target).numpy()
    edges = np.linspace(0, 1, n_bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    acc = np.bincount(index, weights=correct, minlength=n_bins) / np.maximum(counts, 1)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = Figure(figsize=(5, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    width = 1 / n_bins
    shown = counts > 0
    top.bar(centers[shown], acc[shown], width=width, edgecolor="k", label="accuracy")
    top.plot([0, 1], [0, 1], "r--", lw=1, label="perfect calibration")
    top.set(ylabel="accuracy", ylim=(0, 1), title=f"reliability (ECE {ece:.3f})")
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(centers, counts, width=width, color="0.5", edgecolor="k")
    bottom.set(xlabel="confidence (top-1 probability)", ylabel="images", xlim=(0, 1))
    return fig


def score_histogram_figure(
    scores: Tensor, is_defect: Tensor, threshold: float | None, title: str
) -> Figure:
    """Histograms of the score of good and of defective images, and the threshold: how far
    apart an anomaly model keeps them, and where the line cuts."""
    scores, is_defect = scores.float().numpy(), is_defect.bool().numpy()
    edges = np.histogram_bin_edges(scores, bins=40)
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.subplots()
    for mask, label, color in ((~is_defect, "good", "tab:green"), (is_defect, "defect", "tab:red")):
        if mask.any():
            ax.hist(
                scores[mask], bins=edges, alpha=0.6, color=color, label=f"{label} ({mask.sum()})"
            )
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1.5, label=f"threshold {threshold:.4g}")
    ax.set(xlabel="anomaly score", ylabel="images", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
