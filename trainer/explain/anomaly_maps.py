"""An anomaly model's map as a heatmap: what takes Grad-CAM's place for a model of good images.

The map (``PatchCore.forward``: scores and maps) is each pixel's distance to the nearest good
patch, at the model's input size. The maps of the images shown together are scaled to [0, 1]
by one common range (their lowest and highest values), so that a good board looks cool next to
a defective one: scaled one by one, every board's most ordinary patch would glow as hot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


@torch.no_grad()
def anomaly_maps(model: Any, images: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Raw maps (N, H, W) and scores (N,) of uint8 ``images`` (N, 3, H, W) at the input size."""
    scores, maps = model(model.normalize(images.to(model.device)))
    return maps[:, 0].float().cpu().numpy(), scores.float().cpu().numpy()


def common_scale(maps: np.ndarray) -> np.ndarray:
    """``maps`` scaled to [0, 1] by their common lowest and highest value."""
    low, high = float(maps.min()), float(maps.max())
    return ((maps - low) / max(high - low, 1e-12)).astype(np.float32)


def threshold_of(model: Any) -> float | None:
    """The operating point's threshold a checkpoint carries (None before it has one)."""
    op = (getattr(model, "run_metadata", None) or {}).get("operating_point") or {}
    return float(op["threshold"]) if "threshold" in op else None


def verdict(score: float, threshold: float | None) -> str:
    """A caption: the score, and pass or fail where the threshold is known."""
    if threshold is None:
        return f"anomaly score {score:.3g}"
    return (
        f"anomaly score {score:.3g} ({'fail' if score >= threshold else 'pass'} at {threshold:.3g})"
    )
