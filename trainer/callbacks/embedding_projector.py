"""TensorBoard's embedding projector of the validation set's penultimate features, once.

At the end of training, with the best checkpoint's weights; at most ``max_images`` images
(evenly spaced), each with its true and predicted label and a thumbnail in the sprite. Open the
PROJECTOR tab of TensorBoard and colour by ``label`` or ``correct``.
"""

from __future__ import annotations

import logging

import lightning as L

from trainer.callbacks.common import best_weights, val_dataset
from trainer.utils.loggers import tensorboard_writer

log = logging.getLogger(__name__)


class EmbeddingProjector(L.Callback):
    """Write the projector files for up to ``max_images`` validation images when training ends.

    Args:
        max_images: points in the projector (0: off).
        thumbnail: side of each sprite thumbnail in pixels.
    """

    def __init__(self, max_images: int = 256, thumbnail: int = 32) -> None:
        self.max_images = max_images
        self.thumbnail = thumbnail

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        dataset = val_dataset(trainer)
        if writer is None or dataset is None or self.max_images <= 0:
            return
        from trainer.explain.projector import log_embedding

        with best_weights(trainer, pl_module):
            count = log_embedding(
                writer, pl_module, dataset, trainer.global_step, self.max_images, self.thumbnail
            )
        writer.flush()
        log.info("Embedding projector: %d validation images in %s", count, writer.log_dir)
