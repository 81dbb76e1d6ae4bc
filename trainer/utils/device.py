"""Which device a Trainer setting means, decided once for every caller."""

from __future__ import annotations

__all__ = ["default_precision", "on_gpu"]


def on_gpu(accelerator: str) -> bool:
    """True when ``trainer.accelerator`` puts the run on a CUDA GPU ("auto": when there is one)."""
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def default_precision(accelerator: str) -> str:
    """bf16 mixed precision where the GPU supports it, full precision elsewhere."""
    import torch

    return "bf16-mixed" if on_gpu(accelerator) and torch.cuda.is_bf16_supported() else "32-true"
