"""TensorBoard's embedding projector over the penultimate features of the validation set.

Do the classes form clusters the head can separate, and which boards sit in the wrong one?
Each point is an image (its thumbnail in the sprite), coloured by its true or predicted label.
The count is bounded (``max_images``, evenly spaced over the set) so the sprite and the TSV
files stay small and the forward pass stays cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset


def penultimate(net: nn.Module, x: Tensor) -> Tensor:
    """The features the classifier reads (pooled, before the last linear layer), (N, D)."""
    return net.forward_head(net.forward_features(x), pre_logits=True).flatten(1)


def spaced_indices(length: int, count: int) -> list[int]:
    """``count`` indices evenly spread over ``range(length)`` (all of them when fewer)."""
    if count >= length:
        return list(range(length))
    return sorted({int(i) for i in np.linspace(0, length - 1, count)})


@torch.no_grad()
def collect_embeddings(
    model: Any, dataset: Dataset, max_images: int = 500, thumbnail: int = 32, batch_size: int = 64
) -> tuple[Tensor, list[list[str]], Tensor]:
    """Features (N, D), metadata rows (label, predicted, correct) and thumbnails (N, 3, t, t).

    Args:
        model: an ``ImageClassifier``.
        dataset: ``(uint8 image, label)`` items at the model's input size.
        max_images: at most this many images, evenly spaced.
        thumbnail: side of each sprite thumbnail in pixels.
        batch_size: images per forward pass.
    """
    subset = Subset(dataset, spaced_indices(len(dataset), max_images))
    feats, rows, thumbs = [], [], []
    names = model.class_names
    for images, labels in DataLoader(subset, batch_size=batch_size, shuffle=False):
        x = model.normalize(images.to(model.device))
        features = model.net.forward_features(x)
        f = model.net.forward_head(features, pre_logits=True).flatten(1)
        predicted = model.net.forward_head(features).argmax(dim=1).cpu()
        feats.append(f.float().cpu())
        rows += [
            [names[t], names[p], str(t == p).lower()]
            for t, p in zip(labels.tolist(), predicted.tolist(), strict=True)
        ]
        small = F.interpolate(images.float(), size=(thumbnail, thumbnail), mode="area")
        thumbs.append(small / 255.0)
    if not feats:
        return torch.zeros(0, 0), [], torch.zeros(0, 3, thumbnail, thumbnail)
    return torch.cat(feats), rows, torch.cat(thumbs)


def log_embedding(
    writer: Any, model: Any, dataset: Dataset, step: int, max_images: int = 500, thumbnail: int = 32
) -> int:
    """Write the projector files (tensors, metadata, sprite, config) with ``writer``; the count."""
    feats, rows, thumbs = collect_embeddings(model, dataset, max_images, thumbnail)
    if len(rows) == 0:
        return 0
    writer.add_embedding(
        feats,
        metadata=rows,
        label_img=thumbs,
        global_step=step,
        tag="val/penultimate",
        metadata_header=["label", "predicted", "correct"],
    )
    return len(rows)
