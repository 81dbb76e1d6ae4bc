"""``export(cfg)``: a checkpoint as a deployment bundle; what ``scripts/export.py`` does.

The keys are those of configs/export.yaml (a DictConfig or a plain dict): ``ckpt_path``, ``out``,
``images``, ``force``, ``parity_images``, ``quantize``, ``calibration_dir``,
``calibration_images``, the request limits ``max_images``, ``max_bytes``, ``max_pixels``, and
``any_size``. The bundle is written only when its ONNX model agrees with the checkpoint on real
images (``trainer.export.parity``); see ``trainer.export.bundle``.

    from trainer.tasks.export import export
    export({"ckpt_path": "outputs/train/runs/<time>/checkpoints/epoch_007.ckpt"})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError

__all__ = ["export"]

LIMITS = ("max_images", "max_bytes", "max_pixels")


def _int(cfg: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = cfg.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: '{value}' is not a positive integer")
    return value


def _bool(cfg: Mapping[str, Any], key: str) -> bool:
    value = cfg.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: '{value}' is not true or false")
    return value


def export(cfg: Mapping[str, Any]) -> Path:
    """Export ``cfg["ckpt_path"]`` as the config says; returns the bundle folder."""
    from trainer.export.bundle import export_bundle
    from trainer.export.schema import ANY_SIDE

    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or ckpt_path == "???":
        raise ConfigError("ckpt_path: required: python scripts/export.py ckpt_path=PATH.ckpt")
    any_size = list(ANY_SIDE) if _bool(cfg, "any_size") else None
    out = export_bundle(
        str(ckpt_path),
        out=cfg.get("out"),
        images=cfg.get("images"),
        force=_bool(cfg, "force"),
        parity_images=_int(cfg, "parity_images", 32),
        quantize=cfg.get("quantize"),
        calibration_dir=cfg.get("calibration_dir"),
        calibration_images=_int(cfg, "calibration_images", 64),
        **{key: _int(cfg, key) for key in LIMITS},
        width=any_size,
        height=any_size,
    )
    print(f"Bundle: {out}")
    print(f"Serve it: python -m trainer.serve {out}")
    return out
