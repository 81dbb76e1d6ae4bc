"""The explain task's config, as scripts/explain.py composes it, for tests that call it directly."""

from __future__ import annotations

from pathlib import Path


def explain_cfg(ckpt: Path, out: Path, **extra: object) -> dict:
    cfg = {
        "ckpt_path": str(ckpt),
        "images": None,
        "num_images": 4,
        "split": "test",
        "out_dir": str(out),
        "max_stages": 5,
        "channels": 8,
        "cam_layers": "auto",
        "worst_mistakes": 3,
        "pointing_game": True,
        "pointing_game_margin": 4,
    }
    return {**cfg, **extra}
