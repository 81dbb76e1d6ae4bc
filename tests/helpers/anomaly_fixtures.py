"""A tiny PatchCore checkpoint and its bundle, made once per test session (export, serve tests).

``train.py experiment=pcb_anomaly`` at the tests' tiny sizes (64 px boards, ``test_resnet``),
then, in a copy of its checkpoint, a threshold between the middle two scores of the test boards:
half of them pass, half fail, so that every pass/fail comparison can fail. Cached below the base
folder ``export_fixtures`` uses; its generated boards are shared with the classifier's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from tests.conftest import TINY, TINY_BOARDS, compose_cfg
from tests.helpers.export_fixtures import LIMITS, split_images


def torch_scores(model, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """PatchCore's scores and maps of ``files`` in PyTorch: training's loader, the module."""
    from trainer.data.dataset import load_image

    pre = model.preprocessing
    images = torch.stack([load_image(f, pre["resize"], pre["interpolation"]) for f in files])
    with torch.no_grad():
        scores, maps = model(model.normalize(images))
    return scores.numpy(), maps.numpy()


def tiny_anomaly_checkpoint(base: Path) -> Path:
    """The fitted PatchCore, its threshold splitting the test boards in half."""
    ckpt = base / "anomaly" / "model.ckpt"
    if not ckpt.is_file():
        from trainer.checkpoint.read import load_model
        from trainer.evaluation.operating_point import write_to_checkpoint
        from trainer.tasks.train import train

        run = base / "anomaly"
        overrides = ["experiment=pcb_anomaly", *TINY, *TINY_BOARDS, "test=false", "~logger"]
        train(compose_cfg([*overrides, f"paths.data_dir={base / 'data'}"], run))
        tmp = ckpt.with_suffix(".tmp")
        shutil.copyfile(run / "run" / "checkpoints" / "epoch_000.ckpt", tmp)
        scores = np.sort(torch_scores(load_model(tmp), split_images(base))[0])
        low, high = scores[len(scores) // 2 - 1], scores[len(scores) // 2]
        assert low < high, "the tiny model gives the middle boards the same score"
        op = {"threshold": float(np.float32((low + high) / 2)), "rule": "target_false_reject"}
        op |= {"target_false_reject": 0.5, "good_class": "good", "score": "anomaly score"}
        write_to_checkpoint(tmp, op)
        tmp.rename(ckpt)
    return ckpt


def tiny_anomaly_bundle(base: Path) -> Path:
    """The bundle of ``tiny_anomaly_checkpoint`` with ``LIMITS`` (parity on the test split)."""
    out = base / "anomaly" / "bundle"
    if not (out / "manifest.json").is_file():
        from trainer.export.bundle import export_bundle

        export_bundle(tiny_anomaly_checkpoint(base), out=out, parity_images=16, **LIMITS)
    return out
