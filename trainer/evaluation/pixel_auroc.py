"""Pixel AUROC: does an anomaly model's map light up where the defect is, pixel by pixel?

Where the data has defect masks, in the MVTec AD layout (``<root>/ground_truth/<kind>/
<name>_mask.png`` for ``<root>/test/<kind>/<name>.png``, non-zero pixels are the defect), every
pixel of every anomaly map, at the model's input size, is ranked against its mask resized to that
size with nearest neighbours (no blending of the mask's edge); a good image counts as an
all-zero mask. One AUROC over all the pixels of the split, as the MVTec AD and PatchCore papers
report it (torchmetrics' exact ``BinaryAUROC``; its state holds every pixel: 4 bytes each, so
1,000 images at 256 px take about 260 MB). A defect image without a mask is left out, with a
warning that names how many and the first.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from trainer.data.image_folder import SPLITS
from trainer.errors import DataError
from trainer.evaluation.predictions import split_loader, true_float32
from trainer.metrics.auroc import BinaryAUROCOrNan

log = logging.getLogger(__name__)

GROUND_TRUTH = "ground_truth"  # the masks' folder beside train/ and test/


def mask_path(root: Path, image: Path, kind: str) -> Path:
    """Where the MVTec AD layout keeps the mask of ``image``, an image of defect ``kind``."""
    return root / GROUND_TRUTH / kind / f"{image.stem}_mask.png"


def load_mask(path: Path, size: tuple[int, int]) -> Tensor:
    """The mask at ``path`` as a bool (h, w) tensor at ``size`` (h, w), resized with nearest."""
    try:
        with Image.open(path) as image:
            resized = image.convert("L").resize((size[1], size[0]), Image.NEAREST)
    except (OSError, ValueError) as err:
        raise DataError(
            f"ground truth: cannot read mask '{path}' ({err}); fix or remove it"
        ) from err
    return torch.from_numpy(np.asarray(resized) > 0)


def _masks(
    samples: list[Any], class_names: list[str], good: str, root: Path, size: tuple[int, int]
) -> tuple[list[bool], list[Tensor], list[Path]]:
    """Which of ``samples`` are scored, their masks, and the masks found missing."""
    keep, masks, missing = [], [], []
    for sample in samples:
        kind = class_names[sample.label]
        path = mask_path(root, Path(sample.path), kind)
        if kind == good:
            masks.append(torch.zeros(size, dtype=torch.bool))
        elif path.is_file():
            masks.append(load_mask(path, size))
        else:
            missing.append(path)
        keep.append(kind == good or path.is_file())
    return keep, masks, missing


@torch.no_grad()
def pixel_auroc(model: Any, datamodule: Any, split: str, device: torch.device) -> float | None:
    """The pixel AUROC of ``model`` (an anomaly model) on ``split`` (or ``all``); None when the
    data has no ``ground_truth/`` folder or the split no image to score."""
    root = Path(datamodule.dataset_root)
    if not (root / GROUND_TRUTH).is_dir():
        return None
    good = model.class_names[model.good_index]
    metric = BinaryAUROCOrNan(sync_on_compute=False)
    missing: list[Path] = []
    scored = 0
    model.to(device).eval()
    for name in SPLITS if split == "all" else (split,):
        loader = split_loader(datamodule, name)
        if loader is None:
            continue
        samples = loader.dataset.samples  # the loader keeps their order
        with true_float32():
            for images, _ in loader:
                _, maps = model(model.normalize(images.to(device)))
                batch, samples = samples[: len(images)], samples[len(images) :]
                size = (int(maps.shape[-2]), int(maps.shape[-1]))
                keep, masks, lost = _masks(batch, datamodule.class_names, good, root, size)
                missing += lost
                if masks:
                    chosen = maps[:, 0].float().cpu()[torch.tensor(keep)]
                    metric.update(chosen.flatten(), torch.stack(masks).flatten().long())
                    scored += len(masks)
    if missing:
        log.warning(
            "pixel AUROC: %d defect image(s) of split %s have no mask (first: '%s'); left out",
            len(missing),
            split,
            missing[0],
        )
    return float(metric.compute()) if scored else None
