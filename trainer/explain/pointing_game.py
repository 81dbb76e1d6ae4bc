"""Does the model look at the defect? The pointing game over the generator's defect boxes.

A hit: the Grad-CAM maximum of a correctly classified defect image lies inside the defect's box
widened by ``margin`` pixels at the model's input resolution (default 4 px: one cell of a 16 px
stride feature map is 16 px wide, and the box edges are rounded outwards by the generator).
The score is hits / correctly classified defect images. Chance is what a uniformly random point
would score: the widened box's share of the image, averaged over the same images.

An anomaly model (``kind == "anomaly"``) plays with its anomaly map in Grad-CAM's place, on every
defect image: it names no defect class to get right, and its map's peak is where it points
whatever the threshold.

Boxes come from ``metadata.json`` of a generated set (``trainer/data/pcb/``):
``[x0, y0, x1, y1]`` in the original image's pixels, x1/y1 exclusive; the model sees a square
resize of the whole image, so boxes are scaled by input size / original size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from trainer.data.dataset import load_images
from trainer.errors import DataError
from trainer.explain.anomaly_maps import anomaly_maps
from trainer.explain.gradcam import grad_cam


@dataclass
class BoxedImage:
    path: Path
    label: str
    bbox: tuple[float, float, float, float]  # original-image pixels, x1/y1 exclusive


@dataclass
class PointingResult:
    score: float  # hits / counted
    hits: int
    counted: int  # correctly classified defect images
    defect_images: int
    chance: float
    margin_px: float
    heatmap: str = "Grad-CAM"  # or "anomaly map" (then every defect image is counted)

    def line(self) -> str:
        counted = "correctly classified " if self.heatmap == "Grad-CAM" else ""
        return (
            f"pointing game ({self.heatmap}): {self.score:.3f} ({self.hits}/{self.counted} "
            f"{counted}defect images; {self.defect_images} defect images in all; margin "
            f"{self.margin_px:g} px at the input size; chance {self.chance:.3f})"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def boxed_images(dataset_root: str | Path, split: str = "test") -> list[BoxedImage]:
    """The images of ``split`` that have a defect box in ``dataset_root/metadata.json``."""
    root = Path(dataset_root).expanduser()
    try:
        meta = json.loads((root / "metadata.json").read_text())
    except (OSError, ValueError) as err:
        raise DataError(
            f"pointing_game: '{root / 'metadata.json'}' cannot be read ({err}); the pointing "
            "game needs a generated board set (data=pcb) with its defect boxes"
        ) from err
    return [
        BoxedImage(root / m["path"], m["label"], tuple(m["bbox"]))
        for m in meta.get("images", [])
        if m.get("split") == split and m.get("bbox")
    ]


def scale_box(
    bbox: Sequence[float], original: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    """A box in original (w, h) pixels -> the model's input (w, h) pixels."""
    sx, sy = size[0] / original[0], size[1] / original[1]
    return np.array([bbox[0] * sx, bbox[1] * sy, bbox[2] * sx, bbox[3] * sy], np.float32)


def points_in_boxes(heatmaps: np.ndarray, boxes: np.ndarray, margin: float) -> np.ndarray:
    """Whether each heatmap's maximum (pixel centre) lies in its box widened by ``margin``."""
    n, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, -1).argmax(axis=1)
    y, x = flat // w + 0.5, flat % w + 0.5
    return (
        (x >= boxes[:, 0] - margin)
        & (x <= boxes[:, 2] + margin)
        & (y >= boxes[:, 1] - margin)
        & (y <= boxes[:, 3] + margin)
    )


def chance_level(boxes: np.ndarray, size: tuple[int, int], margin: float) -> float:
    """Mean share of the image covered by the widened boxes: a random point's hit rate."""
    if len(boxes) == 0:
        return 0.0
    w, h = size
    x0, y0 = np.clip(boxes[:, 0] - margin, 0, w), np.clip(boxes[:, 1] - margin, 0, h)
    x1, y1 = np.clip(boxes[:, 2] + margin, 0, w), np.clip(boxes[:, 3] + margin, 0, h)
    return float(np.mean((x1 - x0) * (y1 - y0) / (w * h)))


def pointing_game(
    model: Any,
    items: list[BoxedImage],
    margin: float = 4.0,
    layers: str | Sequence[str] = "auto",
    batch_size: int = 32,
) -> PointingResult:
    """The pointing game of ``model`` (an ImageClassifier, or an anomaly model: its anomaly map)
    over boxed defect images.

    Args:
        model: the model; its ``class_names`` must contain the images' labels.
        items: defect images with boxes (``boxed_images``).
        margin: tolerance in pixels at the model's input resolution.
        layers: Grad-CAM target layers (see ``trainer.explain.gradcam``).
        batch_size: images per Grad-CAM pass.
    """
    unknown = sorted({i.label for i in items} - set(model.class_names))
    if unknown:
        raise DataError(f"pointing_game: labels {unknown} are not classes of the model")
    side = tuple(model.preprocessing["resize"][::-1])  # (w, h)
    anomaly = getattr(model, "kind", None) == "anomaly"
    hits, boxes_counted = [], []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        images = load_images([i.path for i in batch], model.preprocessing)
        if anomaly:
            heatmaps, _ = anomaly_maps(model, images)
            correct = np.ones(len(batch), bool)
        else:
            with torch.no_grad():
                x = model.normalize(images.to(model.device))
            heatmaps, probs = grad_cam(model.net, x, layers)
            labels = np.array([model.class_names.index(i.label) for i in batch])
            correct = probs.argmax(dim=1).numpy() == labels
        boxes = np.stack([scale_box(i.bbox, _size_of(i.path), side) for i in batch])
        hits.append(points_in_boxes(heatmaps, boxes, margin)[correct])
        boxes_counted.append(boxes[correct])
    hit = np.concatenate(hits) if hits else np.zeros(0, bool)
    counted = np.concatenate(boxes_counted) if boxes_counted else np.zeros((0, 4), np.float32)
    return PointingResult(
        score=float(hit.mean()) if len(hit) else 0.0,
        hits=int(hit.sum()),
        counted=len(hit),
        defect_images=len(items),
        chance=chance_level(counted, side, margin),
        margin_px=float(margin),
        heatmap="anomaly map" if anomaly else "Grad-CAM",
    )


def _size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def boxes_by_path(dataset_root: str | Path) -> dict[Path, tuple[float, ...]]:
    """Resolved image path -> defect box, from a generated set's metadata (empty elsewhere)."""
    root = Path(dataset_root).expanduser()
    try:
        meta = json.loads((root / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}
    return {
        (root / m["path"]).resolve(): tuple(m["bbox"])
        for m in meta.get("images", [])
        if m.get("bbox")
    }


def input_box(path: Path, bbox: Sequence[float] | None, preprocessing: dict[str, Any]):  # noqa: ANN201
    """``bbox`` of the image at ``path`` in the model's input pixels (None stays None)."""
    if bbox is None:
        return None
    return scale_box(bbox, _size_of(path), tuple(preprocessing["resize"][::-1])).tolist()
