"""What the network sees, in TensorBoard at the end of training: feature maps and Grad-CAM.

A fixed set of validation images (evenly spaced over the set, so the same boards in every run
of the same data) is explained with the weights that will be tested and exported: the best
checkpoint's, loaded for the duration and put back afterwards.
Tags: ``explain/gradcam`` (boards and heatmaps, defect boxes drawn when the data has them) and
``explain/feature_maps/<i>`` (each stage's most active channels, low to high level).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import torch

from trainer.checkpoint import load_checkpoint
from trainer.utils.loggers import tensorboard_writer

log = logging.getLogger(__name__)


@contextlib.contextmanager
def best_weights(trainer: L.Trainer, pl_module: L.LightningModule) -> Iterator[str]:
    """Inside: ``pl_module`` holds the best checkpoint's weights (when there is one), in eval mode.

    Yields which weights are in use ("best" or "last"); everything is restored on exit.
    """
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


class ExplainImages(L.Callback):
    """Log feature maps and Grad-CAM of ``num_images`` validation images when training ends.

    Args:
        num_images: validation images explained (0: off).
        max_stages: feature-map stages shown (all of a CNN's; a ViT's blocks evenly spaced).
        channels: most active channels shown per stage.
        cam_layers: Grad-CAM target layers: auto | last | a list of module names.
    """

    def __init__(
        self,
        num_images: int = 8,
        max_stages: int = 5,
        channels: int = 8,
        cam_layers: str | Sequence[str] = "auto",
    ) -> None:
        self.num_images = num_images
        self.max_stages = max_stages
        self.channels = channels
        self.cam_layers = cam_layers

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        dataset = val_dataset(trainer)
        if writer is None or dataset is None or self.num_images <= 0:
            return
        from trainer.explain.projector import spaced_indices
        from trainer.explain.render import as_hwc, grid
        from trainer.explain.report import explain_images

        indices = spaced_indices(len(dataset), self.num_images)
        images = torch.stack([dataset[i][0] for i in indices])
        labels = [int(dataset[i][1]) for i in indices]
        boxes = val_boxes(trainer, dataset, indices, pl_module.preprocessing)
        with best_weights(trainer, pl_module) as which:
            explained = explain_images(
                pl_module,
                images,
                [f"val #{i} ({which} weights)" for i in indices],
                labels,
                boxes,
                self.max_stages,
                self.channels,
                self.cam_layers,
            )
        step = trainer.global_step
        writer.add_image(
            "explain/gradcam", as_hwc(grid([e.tile for e in explained])), step, dataformats="HWC"
        )
        for k, e in enumerate(explained):
            writer.add_image(
                f"explain/feature_maps/{k}", as_hwc(e.features), step, dataformats="HWC"
            )
        writer.flush()
