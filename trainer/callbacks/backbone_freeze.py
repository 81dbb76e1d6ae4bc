"""Train the new head alone for the first epochs, then the whole network.

Why not Lightning's BackboneFinetuning: it adds the backbone's param group to the optimizer
mid-training, which the warmup-cosine LambdaLR (built with the initial groups) never schedules.
Here both groups exist from the start (the backbone at a lower lr) and freezing only switches
``requires_grad``, derived from the epoch, so a resumed run freezes exactly as the original.
"""

from __future__ import annotations

import logging

import lightning as L
from torch import nn

log = logging.getLogger(__name__)


class BackboneFreeze(L.Callback):
    """Freeze the backbone for ``pl_module.hparams.freeze_backbone_epochs`` epochs.

    Only when pretrained weights were loaded: a randomly initialised backbone must learn.
    """

    def _frozen(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        epochs = int(pl_module.hparams.get("freeze_backbone_epochs", 0))
        return bool(pl_module.pretrained_loaded) and trainer.current_epoch < epochs

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.hparams.get("freeze_backbone_epochs", 0) and not pl_module.pretrained_loaded:
            log.info("No pretrained weights: the backbone trains from the first epoch (no freeze).")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = self._frozen(trainer, pl_module)
        for param in pl_module.backbone_parameters():
            param.requires_grad_(not frozen)
        if frozen:
            for module in pl_module.net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()  # keep the pretrained running statistics
            for module in pl_module.head.modules():
                module.train()
