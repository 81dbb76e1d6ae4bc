"""What several callbacks share: the best checkpoint's weights for a while, the validation set
and the defect boxes of its images."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import lightning as L

from trainer.checkpoint.atomic_io import wait_for_checkpoints
from trainer.checkpoint.read import load_checkpoint

__all__ = ["best_weights", "val_boxes", "val_dataset"]


@contextlib.contextmanager
def best_weights(trainer: L.Trainer, pl_module: L.LightningModule) -> Iterator[str]:
    """Inside: ``pl_module`` holds the best checkpoint's weights (when there is one), in eval mode.

    Yields which weights are in use ("best" or "last"); everything is restored on exit.
    """
    wait_for_checkpoints(trainer)  # in on_train_end the last best may still be being written
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
    saved = None
    was_training = pl_module.training
    if best and Path(best).is_file():
        saved = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        pl_module.load_state_dict(load_checkpoint(best)["state_dict"])
    pl_module.eval()
    try:
        yield "best" if saved is not None else "last"
    finally:
        if saved is not None:
            pl_module.load_state_dict(saved)
        pl_module.train(was_training)


def val_dataset(trainer: L.Trainer):  # noqa: ANN201 - ImageSamples or None
    dm = trainer.datamodule
    datasets = getattr(dm, "datasets", {}) if dm is not None else {}
    dataset = datasets.get("val")
    return dataset if dataset is not None and len(dataset) else None


def val_boxes(trainer: L.Trainer, dataset, indices: list[int], preprocessing: dict) -> list:  # noqa: ANN001
    """Defect boxes of the chosen validation images in input pixels (None where not known)."""
    from trainer.explain.pointing_game import boxes_by_path, input_box

    root = getattr(trainer.datamodule, "dataset_root", None)
    samples = getattr(dataset, "samples", None)
    if root is None or samples is None:
        return [None] * len(indices)
    known = boxes_by_path(root)
    return [
        input_box(samples[i].path, known.get(Path(samples[i].path).resolve()), preprocessing)
        for i in indices
    ]
