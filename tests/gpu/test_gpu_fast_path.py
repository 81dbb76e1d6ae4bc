"""The GPU fast path (bf16, channels_last, fused AdamW, cudnn benchmark); skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from trainer.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class Probe:
    """Records what the fast path chose, from inside the fit."""

    seen: dict = {}


def test_gpu_run_takes_the_fast_path(tiny_cfg, monkeypatch) -> None:
    import lightning as L

    original = L.Trainer.fit

    def fit(self, model, *args, **kwargs):
        result = original(self, model, *args, **kwargs)
        opt = self.optimizers[0]
        Probe.seen = {
            "precision": self.precision,
            "fused": opt.defaults.get("fused"),
            "channels_last": next(model.net.parameters()).is_contiguous(
                memory_format=torch.channels_last
            )
            or any(
                p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
                for p in model.net.parameters()
            ),
            "benchmark": torch.backends.cudnn.benchmark,
            "device": str(model.device),
        }
        return result

    monkeypatch.setattr(L.Trainer, "fit", fit)
    metrics = train(tiny_cfg("trainer.accelerator=auto", "trainer.max_epochs=1"))
    assert Probe.seen["device"].startswith("cuda")
    assert Probe.seen["precision"] == "bf16-mixed"
    assert Probe.seen["fused"] is True
    assert Probe.seen["channels_last"]
    assert Probe.seen["benchmark"] is True
    assert 0 <= metrics["test/acc"] <= 1
