"""The tiny checkpoint with an operating point, its bundle, and folders of boards to predict on.

Made once per test session below the base temp folder ``export_fixtures`` uses (tests/tasks and
tests/export/runtime share them); the shared checkpoint itself is copied, never changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.conftest import ROOT
from tests.helpers.export_fixtures import split_images, tiny_checkpoint

SHARED = "export-shared"  # tests/export/conftest.py's base folder


def reference_probs(model, files: list[Path]) -> torch.Tensor:  # noqa: ANN001 - a classifier
    """Softmax of the logits ``trainer.evaluation.predictions.predict`` gives for ``files``,
    through the dataset a split is evaluated with."""
    from torch.utils.data import DataLoader

    from trainer.data.dataset import ImageSamples
    from trainer.data.image_folder import Sample
    from trainer.evaluation.predictions import predict

    pre = model.preprocessing
    samples = ImageSamples(
        [Sample(f, 0) for f in files], pre["resize"], interpolation=pre["interpolation"]
    )
    loader = DataLoader(samples, batch_size=5, shuffle=False)
    logits, _ = predict(model, loader, torch.device("cpu"), torch.zeros(1, dtype=torch.long))
    return logits.softmax(dim=-1)


def checkpoint_with_threshold(base: Path) -> Path:
    """A copy of ``tiny_checkpoint`` whose operating point lies between the middle two defect
    scores of the test boards: half of them pass, half fail."""
    from trainer.checkpoint.read import load_classifier
    from trainer.evaluation.operating_point import SCORE, write_to_checkpoint

    ckpt = base / "with_threshold" / "model.ckpt"
    if not ckpt.is_file():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        shutil.copyfile(tiny_checkpoint(base), tmp)
        model = load_classifier(tmp)
        probs = reference_probs(model, split_images(base))
        scores = np.sort((1 - probs[:, model.class_names.index("good")]).numpy())
        low, high = scores[len(scores) // 2 - 1], scores[len(scores) // 2]
        assert low < high, "the tiny model gives the middle boards the same score"
        op = {"threshold": float(np.float32((low + high) / 2)), "target_recall": 0.5}
        op |= {"val_recall": 0.5, "good_class": "good", "score": SCORE, "margin": 0.0}
        write_to_checkpoint(tmp, op)
        tmp.rename(ckpt)
    return ckpt


def bundle_with_threshold(base: Path) -> Path:
    """The bundle of ``checkpoint_with_threshold``."""
    out = base / "with_threshold" / "bundle"
    if not (out / "manifest.json").is_file():
        from trainer.export.bundle import export_bundle

        export_bundle(checkpoint_with_threshold(base), out=out, parity_images=8)
    return out


def boards_folder(base: Path, folder: Path, corrupt: int = 1) -> list[Path]:
    """Copies of the test boards in ``folder/<class>/``, ``corrupt`` truncated PNGs, and files
    a folder scan skips (hidden, not an image). Returns the boards' copies."""
    copies = []
    for f in split_images(base):
        copies.append(folder / f.parent.name / f.name)
        copies[-1].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, copies[-1])
    data = copies[0].read_bytes()
    for k in range(corrupt):
        (folder / f"broken_{k}.png").write_bytes(data[: len(data) // 2])
    (folder / ".hidden.png").write_bytes(data)
    (folder / "notes.txt").write_text("not an image")
    return copies


def gray_board(path: Path, side: int = 80) -> Path:
    """An 8-bit grayscale board of another size: outside a contract of 64 px RGB boards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side), np.uint8)).save(path)
    return path


def run_predict(*overrides: str, tmp: Path) -> subprocess.CompletedProcess:
    """``python predict.py`` as a user runs it, its run folder ``tmp/run``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("TRAINER_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "predict.py", f"hydra.run.dir={tmp / 'run'}", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
