"""Predictions on a split: the logits every report and every operating point start from.

They are computed in full float32 (no TF32) on one process over the whole split, so that the
figures are those the bundle reproduces and a DDP run's figures those of one process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from trainer.data.image_folder import SPLITS
from trainer.errors import DataError

__all__ = ["label_map", "predict", "split_loader", "split_logits", "true_float32"]


def label_map(data_classes: list[str], model_classes: list[str], root: Any) -> Tensor:
    """Data label -> model label; a class the model does not know is an error."""
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise DataError(
            f"data.root: '{root}' has classes {unknown} that the model does not know "
            f"(it knows {model_classes}); remove those folders or train a model with them"
        )
    return torch.tensor([model_classes.index(c) for c in data_classes])


@contextlib.contextmanager
def true_float32() -> Iterator[None]:
    """Matmuls and convolutions in full float32, not TF32 (which ``train()`` allows on a GPU).

    The operating point is chosen on these scores and the bundle runs float32 on ONNX Runtime:
    TF32 keeps 10 mantissa bits, enough to move a score across the threshold.
    """
    precision = torch.get_float32_matmul_precision()
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


@torch.no_grad()
def predict(model: Any, loader: Any, device: torch.device, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Logits and model-order targets of every batch of ``loader``, in float32 (no TF32)."""
    model.to(device).eval()
    logits, target = [], []
    with true_float32():
        for images, y in loader:
            logits.append(model(model.normalize(images.to(device))).float().cpu())
            target.append(labels[y])
    return torch.cat(logits), torch.cat(target)


def split_loader(datamodule: Any, split: str) -> Any:
    """A loader over ``split`` without augmentation, or None when the data has no such split."""
    from torch.utils.data import DataLoader

    from trainer.data.dataset import ImageSamples

    if not datamodule.scan.splits.get(split):
        return None
    if split in ("val", "test"):  # what the test step reads, all of it in this one process
        return datamodule.eval_dataloader(split)
    pre = datamodule.preprocessing
    samples = ImageSamples(
        datamodule.scan.splits[split], size=pre["resize"], interpolation=pre["interpolation"]
    )
    return DataLoader(samples, batch_size=datamodule.batch_size, shuffle=False)


def split_logits(
    model: Any, datamodule: Any, split: str, device: torch.device, labels: Tensor
) -> tuple[Tensor, Tensor] | None:
    loaders = [split_loader(datamodule, s) for s in (SPLITS if split == "all" else (split,))]
    outs = [predict(model, loader, device, labels) for loader in loaders if loader is not None]
    if not outs:
        return None
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
