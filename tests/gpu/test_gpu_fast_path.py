"""The GPU fast path (bf16, channels_last, fused AdamW, cudnn benchmark); skipped without CUDA."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from trainer.tasks.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class FastPathProbe(L.Callback):
    """Records what the run chose, at its first training step (the Trainer moves the model back
    to the CPU when fit ends, so looking afterwards would see the CPU)."""

    seen: dict = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if FastPathProbe.seen:
            return
        convs = [p for p in pl_module.net.parameters() if p.dim() == 4]
        FastPathProbe.seen = {
            "device": str(pl_module.device),
            "precision": trainer.precision,
            "fused": trainer.optimizers[0].defaults.get("fused"),
            "channels_last": all(p.is_contiguous(memory_format=torch.channels_last) for p in convs),
            "benchmark": torch.backends.cudnn.benchmark,
        }


def test_gpu_run_takes_the_fast_path(tiny_cfg, monkeypatch) -> None:
    FastPathProbe.seen = {}
    original = L.Trainer.fit

    def fit(self, model, *args, **kwargs):
        self.callbacks.append(FastPathProbe())
        return original(self, model, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", fit)
    metrics = train(tiny_cfg("trainer.accelerator=auto", "trainer.max_epochs=1"))
    seen = FastPathProbe.seen
    assert seen["device"].startswith("cuda"), seen
    assert seen["precision"] == "bf16-mixed", seen
    assert seen["fused"] is True, seen
    assert seen["channels_last"], seen
    assert seen["benchmark"] is True, seen
    assert 0 <= metrics["test/acc"] <= 1


class SyncWindow(L.Callback):
    """Turns any host-device sync into an error from step ``first`` to step ``last``: the window
    spans whole steps, Lightning's loop, logging and the progress bar included."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last, self.checked = first, last, 0

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.first:
            torch.cuda.set_sync_debug_mode("error")
        if trainer.global_step == self.last:
            torch.cuda.set_sync_debug_mode("default")
        if self.first < trainer.global_step <= self.last:
            self.checked += 1


class SameBatch:
    """A loader of one batch already on the GPU, ``steps`` times: no input pipeline."""

    def __init__(self, images: torch.Tensor, target: torch.Tensor, steps: int) -> None:
        self.batch, self.steps = (images, target), steps

    def __iter__(self):
        return iter([self.batch] * self.steps)

    def __len__(self) -> int:
        return self.steps


def test_training_steps_never_wait_for_the_gpu() -> None:
    """A raw loop queues step after step; one sync per step (a metric update, a loss read by the
    progress bar) would make the CPU wait for each step to finish before queueing the next."""
    from functools import partial

    from trainer.callbacks.progress_bar import SyncFreeRichProgressBar
    from trainer.models.classifier import ImageClassifier
    from trainer.models.schedule import warmup_cosine

    model = ImageClassifier(
        "resnet10t",
        [f"c{i}" for i in range(40)],  # above the per-class logging limit, like a large dataset
        pretrained=False,
        optimizer=partial(torch.optim.AdamW, lr=1e-3),
        scheduler=warmup_cosine,
        good_class=None,
    )
    images = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8, device="cuda")
    target = torch.randint(0, 40, (16,), device="cuda")
    window = SyncWindow(first=5, last=25)
    trainer = L.Trainer(
        accelerator="cuda",
        devices=1,
        precision="bf16-mixed",
        max_steps=30,
        logger=False,
        enable_checkpointing=False,
        # the bar's one read every N steps (a sync on purpose) falls outside the window
        callbacks=[window, SyncFreeRichProgressBar(metrics_every_n_steps=1000)],
    )
    try:
        trainer.fit(model, train_dataloaders=SameBatch(images, target, 30))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert window.checked == 20
