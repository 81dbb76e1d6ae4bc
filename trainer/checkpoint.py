"""Read checkpoints safely: tensors and plain data only (``weights_only``), never pickled code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import CheckpointError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path``, loaded on the CPU with ``weights_only=True``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path: file '{path}' does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"ckpt_path: '{path}' is not a checkpoint this project can read safely "
            f"({str(err).splitlines()[0][:200]})"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"ckpt_path: '{path}' is not a Lightning checkpoint (no state_dict)")
    return ckpt


def checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """What the checkpoint says about itself: classes, preprocessing, backbone, config, lineage."""
    meta = load_checkpoint(path).get("trainer_metadata")
    if not meta:
        raise CheckpointError(f"ckpt_path: '{path}' was not written by this project (no metadata)")
    return meta


def check_classes(path: str | Path, class_names: list[str]) -> None:
    """Refuse a checkpoint whose classes differ from the data's."""
    trained = checkpoint_metadata(path)["class_names"]
    if list(trained) != list(class_names):
        raise CheckpointError(
            f"ckpt_path: '{path}' was trained on classes {list(trained)} but the data has "
            f"{list(class_names)}; use data whose class folders match, or train a new model"
        )
