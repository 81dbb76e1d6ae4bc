"""Train the new head alone for the first epochs, then the whole network.

Why not Lightning's BackboneFinetuning: it adds the backbone's param group to the optimizer
mid-training, which the warmup-cosine LambdaLR (built with the initial groups) never schedules.
Here both groups exist from the start (the backbone at a lower lr) and freezing only switches
``requires_grad`` and the batch norms' mode, both derived from the epoch, so a resumed run
freezes exactly as the original, from an epoch's start or from the middle of one.
"""

from __future__ import annotations

import logging

import lightning as L
from torch import nn

log = logging.getLogger(__name__)


class BackboneFreeze(L.Callback):
    """Freeze the backbone for ``pl_module.hparams.freeze_backbone_epochs`` epochs.

    Only when pretrained weights were loaded: a randomly initialised backbone must learn. While
    frozen, the batch norms keep the pretrained running statistics (eval mode), unless
    ``adapt_batch_norm`` (AdaBN, Li et al. 2016, arXiv:1603.04779: the statistics of the new
    domain, weights still frozen); afterwards they train again, as in a model never frozen.
    """

    @staticmethod
    def _epochs(pl_module: L.LightningModule) -> int:
        return int(pl_module.hparams.get("freeze_backbone_epochs", 0) or 0)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epochs(pl_module) and not pl_module.pretrained_loaded:
            log.info("No pretrained weights: the backbone trains from the first epoch (no freeze).")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a fit resumed mid-epoch (hpc_ckpt) skips that epoch's on_train_epoch_start
        self._apply(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(trainer, pl_module)

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self._epochs(pl_module) and pl_module.pretrained_loaded):
            return
        frozen = trainer.current_epoch < self._epochs(pl_module)
        adapt = bool(pl_module.hparams.get("adapt_batch_norm", False))
        for param in pl_module.backbone_parameters():
            param.requires_grad_(not frozen)
        for module in pl_module.net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(not frozen or adapt)
        if frozen:
            pl_module.head.train()
