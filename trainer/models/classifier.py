"""The LightningModule: a timm backbone with a new head, fine-tuned with a lower backbone lr.

Batches arrive as uint8 images; they are scaled and normalised on the device (after the
transfer), so data workers only decode and crop, and every consumer shares one preprocessing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from trainer.metrics.split import MeanLoss, SplitMetrics
from trainer.models.backbone import create_backbone, preprocessing_of
from trainer.models.loss import check_loss, classification_loss

PER_CLASS_LOG_LIMIT = 32  # classes up to which each class's AUROC is logged every epoch


class ImageClassifier(L.LightningModule):
    """Fine-tunes ``backbone`` for ``class_names``.

    Args:
        backbone: timm model name.
        class_names: the dataset's classes, in label order; stored in every checkpoint.
        pretrained, pretrained_path, require_pretrained: see ``create_backbone``.
        input_size: square input side; None takes the backbone's pretrained size, and so does
            "auto" here (train.py resolves auto from the training images first).
        drop_rate: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing.
        loss: cross_entropy | focal (``trainer/models/loss.py``).
        focal_gamma: focal loss's exponent (0: cross-entropy).
        freeze_backbone_epochs: epochs that train the head only (applied by BackboneFreeze).
        backbone_lr_ratio: backbone lr as a share of the head's.
        adapt_batch_norm: while the backbone is frozen, its batch norms still update their
            running statistics on the new data (AdaBN), their weights stay frozen.
        compile: torch.compile the network.
        channels_last: NHWC memory format ("auto": on CUDA and CPU, where convolutions gain from
            it: 1.04x to 1.4x for CNN training steps on this project's CPU; cuDNN's fast path).
        model_kwargs: extra keyword arguments of ``timm.create_model``.
        optimizer: partial optimizer, called with the param groups.
        scheduler: partial schedule, called with the optimizer and ``total_steps``.
        good_class: the pass class for pass/fail AUROC.
    """

    def __init__(
        self,
        backbone: str,
        class_names: list[str],
        pretrained: bool = True,
        pretrained_path: str | None = None,
        require_pretrained: bool = False,
        input_size: int | str | None = None,
        drop_rate: float = 0.0,
        label_smoothing: float = 0.0,
        loss: str = "cross_entropy",
        focal_gamma: float = 2.0,
        freeze_backbone_epochs: int = 0,
        backbone_lr_ratio: float = 0.1,
        adapt_batch_norm: bool = False,
        compile: bool = False,
        channels_last: bool | str = "auto",
        model_kwargs: dict[str, Any] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        good_class: str | None = "good",
    ) -> None:
        super().__init__()
        check_loss(loss, focal_gamma)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.class_names = list(class_names)
        self.net, self.pretrained_loaded = create_backbone(
            backbone,
            num_classes=len(self.class_names),
            pretrained=pretrained,
            pretrained_path=pretrained_path,
            require_pretrained=require_pretrained,
            drop_rate=drop_rate,
            **dict(model_kwargs or {}),
        )
        self.preprocessing = preprocessing_of(self.net, input_size)
        self.register_buffer(
            "mean", torch.tensor(self.preprocessing["mean"]).view(1, 3, 1, 1) * 255
        )
        self.register_buffer("std", torch.tensor(self.preprocessing["std"]).view(1, 3, 1, 1) * 255)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # Training AUROC over the epoch's last 4096 images of each process (the model changes
        # every step anyway):
        # bounded memory and time on large sets. Val and test, the figures that decide, use all.
        self.train_metrics = SplitMetrics(self.class_names, good_class, auroc_last_rows=4096)
        self.val_metrics = SplitMetrics(self.class_names, good_class)
        self.test_metrics = SplitMetrics(self.class_names, good_class)
        # Computed in the epoch-end hooks, which every rank runs: a Metric object handed to
        # self.log is computed where Lightning first reads it, and that is the progress bar, on
        # rank zero alone: a collective the other ranks never join.
        self.train_loss, self.val_loss, self.test_loss = MeanLoss(), MeanLoss(), MeanLoss()
        self.run_metadata: dict[str, Any] = {}
        side = self.preprocessing["input_size"][-1]
        self.example_input_array = torch.zeros(1, 3, side, side)
        if compile:
            self.net.compile()  # in place: state-dict keys stay those of the plain network

    @property
    def head(self) -> nn.Module:
        return self.net.get_classifier()

    def backbone_parameters(self) -> list[nn.Parameter]:
        head_ids = {id(p) for p in self.head.parameters()}
        return [p for p in self.net.parameters() if id(p) not in head_ids]

    def forward(self, x: Tensor) -> Tensor:
        """Logits of normalised float images (N, 3, H, W)."""
        return self.net(x)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (or 0-255 float) images to the backbone's normalised float input."""
        return (images.float() - self.mean) / self.std

    def channels_last_on(self, device_type: str) -> bool:
        """Whether the NHWC memory format is used on a device of this type."""
        wanted = self.hparams.get("channels_last", "auto")
        return device_type in ("cuda", "cpu") if wanted == "auto" else bool(wanted)

    @property
    def use_channels_last(self) -> bool:
        return self.channels_last_on(self.device.type)

    def configure_model(self) -> None:
        # Here, before the strategy wraps the model: DDP must not see parameters change layout.
        if self.channels_last_on(self.trainer.strategy.root_device.type):
            self.net.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, Tensor):  # example_input_array (graph, summary): already float
            return batch
        images, target = batch
        x = self.normalize(images)
        if self.use_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, target

    def _step(self, batch: tuple[Tensor, Tensor], metrics: SplitMetrics) -> tuple[Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        hp = self.hparams
        loss = classification_loss(logits, y, hp.loss, hp.label_smoothing, hp.focal_gamma)
        metrics.update(logits.detach(), y)
        return loss, logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self._step(batch, self.train_metrics)
        # Not prog_bar: Lightning would read it (a device sync) after every step; the progress
        # bar (trainer/callbacks/progress_bar.py) reads it every few steps instead.
        self.log("train/loss_step", loss, on_step=True, on_epoch=False)
        self.train_loss.update(loss, len(batch[1]))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, _ = self._step(batch, self.val_metrics)
        self.val_loss.update(loss, len(batch[1]))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, _ = self._step(batch, self.test_metrics)
        self.test_loss.update(loss, len(batch[1]))

    def _log_split(self, metrics: SplitMetrics, loss: MeanLoss, prefix: str) -> None:
        """Log the epoch's figures of every process together (torchmetrics gathers them)."""
        # Per-class AUROCs up to PER_CLASS_LOG_LIMIT classes: beyond, a thousand curves say little
        # and logging them costs seconds per epoch (Lightning's per-key overhead).
        values = metrics.compute(prefix, per_class=len(self.class_names) <= PER_CLASS_LOG_LIMIT)
        loss_key = "train/loss_epoch" if prefix == "train" else f"{prefix}/loss"
        values[loss_key] = loss.compute()
        bar = {f"{prefix}/acc", "val/loss"} if prefix != "test" else set()
        # already the same on every rank: sync_dist averages equal numbers (and keeps Lightning
        # from warning that epoch values are not synchronised)
        self.log_dict({k: v for k, v in values.items() if k in bar}, prog_bar=True, sync_dist=True)
        self.log_dict({k: v for k, v in values.items() if k not in bar}, sync_dist=True)
        metrics.reset()
        loss.reset()

    def on_train_epoch_end(self) -> None:
        self._log_split(self.train_metrics, self.train_loss, "train")

    def on_validation_epoch_end(self) -> None:
        self._log_split(self.val_metrics, self.val_loss, "val")

    def on_test_epoch_end(self) -> None:
        self._log_split(self.test_metrics, self.test_loss, "test")

    def configure_optimizers(self) -> Any:
        lr = self.optimizer_factory.keywords.get("lr", 1e-3)
        # A pretrained backbone is nudged; a randomly initialised one must learn as fast as the head.
        ratio = self.hparams.backbone_lr_ratio if self.pretrained_loaded else 1.0
        groups = [
            {"params": list(self.head.parameters()), "lr": lr, "name": "head"},
            {"params": self.backbone_parameters(), "lr": lr * ratio, "name": "backbone"},
        ]
        kwargs = {}
        accepts_fused = "fused" in inspect.signature(self.optimizer_factory.func).parameters
        if (
            self.device.type == "cuda"
            and accepts_fused
            and "fused" not in self.optimizer_factory.keywords
        ):
            kwargs["fused"] = True  # one kernel for all parameters (Adam, AdamW, SGD)
        optimizer = self.optimizer_factory(groups, **kwargs)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = self._trainer
        checkpoint["trainer_metadata"] = {
            **self.run_metadata,
            "class_names": self.class_names,
            "preprocessing": self.preprocessing,
            "backbone": self.hparams.backbone,
            # the figures of the epoch this checkpoint holds (ModelCheckpoint saves after the
            # epoch's validation): what a sweep and the history report for the kept model
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}
            if trainer
            else {},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.run_metadata = dict(checkpoint.get("trainer_metadata", {}))
