"""A checkpoint back into a model, and image files at the model's input size.

Kept here (not in the eval code) so that explanations need nothing but a checkpoint: the
network is rebuilt from the checkpoint's own metadata (backbone, classes, input size, timm
keyword arguments) without pretrained weights, then its trained state is loaded strictly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trainer.checkpoint import classifier_from_checkpoint, load_checkpoint
from trainer.data.dataset import load_image
from trainer.data.image_folder import IMAGE_EXTENSIONS
from trainer.errors import DataError


def load_classifier(ckpt_path: str | Path) -> Any:
    """The ``ImageClassifier`` of a checkpoint written by this project, in eval mode on the CPU."""
    return classifier_from_checkpoint(load_checkpoint(ckpt_path), ckpt_path)


def image_files(images: str | Path | list[str | Path]) -> list[Path]:
    """Image files named by ``images``: files, folders (their images, sorted), or a list of both."""
    items = images if isinstance(images, list | tuple) else [images]
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                raise DataError(
                    f"images: folder '{path}' holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"images: '{path}' is neither an image file nor a folder")
    return files


def load_images(files: list[Path], preprocessing: dict[str, Any]) -> Tensor:
    """uint8 images (N, 3, H, W) resized exactly as the model was trained on them."""
    size, mode = preprocessing["resize"], preprocessing.get("interpolation", "bilinear")
    return torch.stack([load_image(f, size, mode) for f in files])
