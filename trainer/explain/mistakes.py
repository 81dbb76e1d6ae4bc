"""The worst mistakes: the images the model got wrong with the highest confidence.

These are where a model is most dangerous (sure and wrong) and where label errors hide. Only the
top ``n`` are kept while scanning (a bounded buffer), so Grad-CAM runs for ``n`` images only.

Eval calls ``write_worst_mistakes(model, dataset, out_dir, n)``; the ``WorstMistakes`` callback
fills a ``MistakeBuffer`` from the validation batches it already computes; the HTML report picks
them from the evaluation's probabilities (``worst_of``) and shows ``mistake_tiles``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from trainer.explain.gradcam import grad_cam
from trainer.explain.render import explained_tile, grid, with_caption


@dataclass
class Mistake:
    image: Tensor  # uint8 (3, H, W), on the CPU
    label: int
    predicted: int
    confidence: float  # probability of the predicted class
    index: int  # position in the dataset (or the validation order)


class MistakeBuffer:
    """The ``n`` highest-confidence errors seen so far; memory is bounded by ``n`` images."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.items: list[Mistake] = []

    def reset(self) -> None:
        self.items = []

    def add(self, images: Tensor, probs: Tensor, labels: Tensor, first_index: int = 0) -> None:
        """Offer a batch: uint8 images (B, 3, H, W), probabilities (B, K), labels (B,)."""
        if self.n <= 0:
            return
        confidence, predicted = probs.float().max(dim=1)
        wrong = (predicted != labels).nonzero().flatten().tolist()
        floor = self.items[-1].confidence if len(self.items) >= self.n else -1.0
        for i in wrong:
            if float(confidence[i]) > floor:
                self.items.append(
                    Mistake(
                        images[i].detach().to("cpu", torch.uint8).clone(),
                        int(labels[i]),
                        int(predicted[i]),
                        float(confidence[i]),
                        first_index + i,
                    )
                )
        self.items = sorted(self.items, key=lambda m: -m.confidence)[: self.n]


def mistake_tiles(
    model: Any,
    mistakes: Sequence[Mistake],
    layers: str | Sequence[str] = "auto",
    boxes: Sequence[Sequence[float] | None] | None = None,
) -> list[Image.Image]:
    """One picture per mistake: board, Grad-CAM of the (wrongly) predicted class, and labels.

    ``boxes``: each mistake's defect box in input pixels (or None), drawn when given.
    """
    if not mistakes:
        return []
    images = torch.stack([m.image for m in mistakes])
    with torch.no_grad():
        x = model.normalize(images.to(model.device))
    heatmaps, _ = grad_cam(model.net, x, layers, classes=[m.predicted for m in mistakes])
    names = model.class_names
    boxes = list(boxes or [None] * len(mistakes))
    return [
        explained_tile(
            m.image,
            heatmap,
            [
                f"#{m.index}  true: {names[m.label]}",
                f"predicted: {names[m.predicted]} ({m.confidence:.2f})",
            ],
            box,
            side=128,
        )
        for m, heatmap, box in zip(mistakes, heatmaps, boxes, strict=True)
    ]


def mistakes_figure(
    model: Any,
    mistakes: Sequence[Mistake],
    layers: str | Sequence[str] = "auto",
    boxes: Sequence[Sequence[float] | None] | None = None,
    ncol: int = 4,
) -> Image.Image:
    """The ``mistake_tiles`` in a grid (a dark band saying so when there are none)."""
    if not mistakes:
        empty = Image.new("RGB", (260, 40), (24, 24, 24))
        return with_caption(empty, ["no mistakes: every image was classified correctly"])
    return grid(mistake_tiles(model, mistakes, layers, boxes), ncol=ncol)


def find_worst_mistakes(
    model: Any, dataset: Dataset, n: int, batch_size: int = 64
) -> list[Mistake]:
    """Scan ``dataset`` (``(uint8 image, label)`` items) and keep its ``n`` worst mistakes."""
    buffer = MistakeBuffer(n)
    seen = 0
    for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        with torch.no_grad():
            probs = model(model.normalize(images.to(model.device))).softmax(dim=1).cpu()
        buffer.add(images, probs, labels, first_index=seen)
        seen += len(labels)
    return buffer.items


def worst_of(probs: Tensor, target: Tensor, dataset: Dataset, n: int) -> list[Mistake]:
    """The ``n`` most confident errors among predictions already made on ``dataset`` (``probs``
    (N, K) and ``target`` (N,) in its order): no second pass, only those ``n`` images are read."""
    confidence, predicted = probs.float().max(dim=1)
    wrong = (predicted != target).nonzero().flatten()
    worst = wrong[confidence[wrong].argsort(descending=True, stable=True)][: max(n, 0)]
    return [
        Mistake(
            dataset[i][0].to(torch.uint8),
            int(target[i]),
            int(predicted[i]),
            float(confidence[i]),
            i,
        )
        for i in worst.tolist()
    ]


def write_worst_mistakes(
    model: Any,
    dataset: Dataset,
    out_dir: str | Path,
    n: int = 16,
    layers: str | Sequence[str] = "auto",
) -> list[dict[str, Any]]:
    """Write ``worst_mistakes.png`` and ``worst_mistakes.json`` to ``out_dir``; return the list.

    Args:
        model: an ``ImageClassifier`` (e.g. ``trainer.checkpoint.read.load_classifier``).
        dataset: ``(uint8 image, label)`` items at the model's input size (``ImageSamples``).
        out_dir: created when missing; only these two files are written.
        n: at most this many mistakes.
        layers: Grad-CAM target layers (see ``trainer.explain.gradcam``).
    """
    was_training = model.training
    model.eval()
    try:
        mistakes = find_worst_mistakes(model, dataset, n)
        figure = mistakes_figure(model, mistakes, layers, defect_boxes(model, dataset, mistakes))
    finally:
        model.train(was_training)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure.save(out / "worst_mistakes.png")
    samples = getattr(dataset, "samples", None)
    rows = [
        {
            "index": m.index,
            "path": str(samples[m.index].path) if samples is not None else None,
            "label": model.class_names[m.label],
            "predicted": model.class_names[m.predicted],
            "confidence": round(m.confidence, 6),
        }
        for m in mistakes
    ]
    (out / "worst_mistakes.json").write_text(json.dumps(rows, indent=1))
    return rows


def to_uint8(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Normalised float images back to uint8 (the inverse of ``ImageClassifier.normalize``)."""
    return (x.detach().float() * std + mean).round().clamp(0, 255).to(torch.uint8)


def defect_boxes(model: Any, dataset: Dataset, mistakes: Sequence[Mistake]) -> list:
    """Defect boxes of the mistakes in input pixels, where the dataset's files have them."""
    from trainer.explain.pointing_game import boxes_by_path, input_box

    samples = getattr(dataset, "samples", None)
    if not samples or not mistakes:
        return [None] * len(mistakes)
    paths = [Path(samples[m.index].path).resolve() for m in mistakes]
    known: dict = {}
    for root in {p.parents[2] for p in paths if len(p.parents) > 2}:  # <root>/<split>/<class>/x
        known.update(boxes_by_path(root))
    return [input_box(p, known.get(p), model.preprocessing) for p in paths]
