"""The GPU fast path (bf16, channels_last, fused AdamW, cudnn benchmark); skipped without CUDA."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from trainer.train import train

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
