"""Explain a batch of images: Grad-CAM and feature maps, rendered, for the callback and script."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from trainer.explain.anomaly_maps import anomaly_maps, common_scale, threshold_of, verdict
from trainer.explain.feature_maps import stage_features
from trainer.explain.gradcam import grad_cam, target_layer_names
from trainer.explain.render import explained_tile, feature_rows, summary, with_caption


@dataclass
class Explained:
    tile: Image.Image  # the board and its Grad-CAM, captioned
    features: Image.Image  # labelled feature maps of each stage, low to high level
    summary: Image.Image  # both together
    predicted: int  # an anomaly model: its good class when it passes the board, else -1
    confidence: float  # an anomaly model: the anomaly score


def explain_images(
    model: Any,
    images: Tensor,
    names: Sequence[str] | None = None,
    labels: Sequence[int | None] | None = None,
    boxes: Sequence[Sequence[float] | None] | None = None,
    max_stages: int = 5,
    channels: int = 8,
    layers: str | Sequence[str] = "auto",
) -> list[Explained]:
    """Grad-CAM of the predicted class and stage feature maps for uint8 ``images`` (N, 3, H, W);
    for an anomaly model its anomaly map takes Grad-CAM's place (``anomaly_maps``).

    Args:
        model: an ``ImageClassifier``, or an anomaly model (``PatchCore``).
        images: uint8 images at the model's input size.
        names: a title per image (file name); default ``#i``.
        labels: the true class index per image, or None where unknown.
        boxes: a defect box per image in input pixels, or None; drawn when given.
        max_stages: feature-map stages shown (see ``stage_features``).
        channels: feature-map channels shown per stage.
        layers: Grad-CAM target layers (see ``trainer.explain.gradcam``).
    """
    n = len(images)
    names = list(names or [f"#{i}" for i in range(n)])
    labels = list(labels or [None] * n)
    boxes = list(boxes or [None] * n)
    with torch.no_grad():
        x = model.normalize(images.to(model.device))
    if getattr(model, "kind", None) == "anomaly":
        stages = stage_features(model.net, x, max_stages, max(model.layers) + 1)
        maps, scores = anomaly_maps(model, images)
        heatmaps, threshold = common_scale(maps), threshold_of(model)
        flagged = scores >= (np.inf if threshold is None else threshold)
        confidence, predicted = scores, np.where(flagged, -1, model.good_index)
        said = [f"{verdict(float(s), threshold)}; anomaly map" for s in scores]
    else:
        stages = stage_features(model.net, x, max_stages)
        heatmaps, probs = grad_cam(model.net, x, layers)
        confidence, predicted = probs.max(dim=1)
        cam_of = "+".join(target_layer_names(model.net, layers, int(x.shape[-1])))
        said = [
            f"predicted: {model.class_names[int(p)]} ({float(c):.2f}); Grad-CAM: {cam_of}"
            for p, c in zip(predicted, confidence, strict=True)
        ]
    out = []
    for i in range(n):
        caption = [names[i][:40]]
        if labels[i] is not None:
            caption.append(f"true: {model.class_names[labels[i]]}")
        caption.append(said[i])
        rows = feature_rows(stages, i, channels)
        out.append(
            Explained(
                tile=explained_tile(images[i], heatmaps[i], caption, boxes[i]),
                features=with_caption(rows, [f"{names[i][:40]}: feature maps, low to high level"]),
                summary=summary(images[i], heatmaps[i], stages, i, caption, boxes[i], channels),
                predicted=int(predicted[i]),
                confidence=float(confidence[i]),
            )
        )
    return out
