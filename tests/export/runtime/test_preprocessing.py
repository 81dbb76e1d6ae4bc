"""score.py's preprocessing gives the training pipeline's evaluation tensor, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from tests.helpers.export_fixtures import load_score_module, split_images
from trainer.checkpoint.read import load_classifier
from trainer.data.dataset import load_image
from trainer.export.runtime.score import resize_uint8
from trainer.export.schema import ANY_SIDE, DEFAULT_MODES


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Blocks plus noise: edges and gradients, like a photo rather than pure noise."""
    base = rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, 3), dtype=np.uint8)
    blocks = np.kron(base, np.ones((4, 4, 1), dtype=np.uint8))[:h, :w].astype(int)
    return np.clip(blocks + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_resize_port_is_bit_identical_to_torchvision(interpolation: str) -> None:
    rng = np.random.default_rng(0)
    mode = getattr(TF.InterpolationMode, interpolation.upper())
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(5, 400, 2))
        out = [int(v) for v in rng.choice([17, 64, 96, 224], 2)]  # down, up, non-square
        image = smooth_image(rng, h, w)
        expected = TF.resize(torch.from_numpy(image).permute(2, 0, 1), out, mode, antialias=True)
        got = resize_uint8(image, tuple(out), interpolation)
        assert np.array_equal(got.transpose(2, 0, 1), expected.numpy()), (h, w, out)


def test_score_py_gives_the_evaluation_tensor(bundle: Path, checkpoint: Path, tmp_path) -> None:
    """Real test-split files, and resized, grey, palette, RGBA and JPEG files of other sizes."""
    score = load_score_module(bundle, "score_pre")
    scorer = score.Model(bundle)
    scorer.limits = {**scorer.limits, "modes": DEFAULT_MODES, "width": ANY_SIDE, "height": ANY_SIDE}
    model = load_classifier(checkpoint)
    meta = model.run_metadata
    pre = meta["preprocessing"]

    rng = np.random.default_rng(1)
    files = split_images(bundle.parent)[:8]
    for i, (mode, (h, w), fmt) in enumerate(
        [
            ("RGB", (100, 80), "PNG"),
            ("L", (37, 53), "PNG"),
            ("P", (64, 200), "PNG"),
            ("RGBA", (150, 150), "PNG"),
            ("RGB", (120, 90), "JPEG"),
        ]  # fmt: skip
    ):
        path = tmp_path / f"img{i}.{fmt.lower()}"
        Image.fromarray(smooth_image(rng, h, w)).convert(mode).save(path, format=fmt)
        files.append(path)

    for path in files:
        expected = load_image(path, pre["resize"], pre["interpolation"])
        got = scorer.preprocess(path.read_bytes(), path.name)
        assert got.dtype == np.uint8 and got.shape == (3, *pre["resize"])
        assert np.array_equal(got, expected.numpy()), path.name
        mean = np.asarray(pre["mean"], dtype=np.float32).reshape(3, 1, 1) * 255
        std = np.asarray(pre["std"], dtype=np.float32).reshape(3, 1, 1) * 255
        normalised = (got.astype(np.float32) - mean) / std
        reference = model.normalize(expected[None])[0].numpy()
        np.testing.assert_allclose(normalised, reference, atol=1e-6)
