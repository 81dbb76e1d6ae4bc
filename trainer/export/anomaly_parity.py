"""The parity gate of an anomaly bundle: the bundle must give the checkpoint's scores, maps and
pass/fail decisions on real images, else it is not written.

Reference: training's ``load_image`` and PatchCore in PyTorch, in full float32 as evaluation
scores (``true_float32``). Bundle: ``score.py``'s decoding and resize and ONNX Runtime (and the
graph alone on the reference's pixels, and ``model.pt2``). Each image's score must be within
``RTOL`` of the reference's, relative to it, its map within ``RTOL`` of the map's largest value,
and its decision at the checkpoint's threshold (``score >= threshold`` fails, float32) the same.

Why ``RTOL = 1e-3`` and not the classifier's 1e-4 absolute: a patch's distance to the bank is
computed as sqrt(|f|^2 - 2 f.m + |m|^2) (one matmul, what makes it fast and exportable), and the
difference of those large terms loses digits: at the decisive patch of generated boards
(|f|^2 + |m|^2) / d^2 was 130 to 330, so a float32 rounding of 6e-8 becomes about 1e-5 of the
score, and MKL and ONNX Runtime's MLAS sum the 240 to 384 products in other orders. Measured:
at most 5.2e-5 relative on the scores, 1.0e-4 of the map's maximum (README, Good boards only:
export). 1e-3 leaves that a margin of ten and still refuses any real fault (another bank, another
normalisation, other weights move scores by percents); the decisions must be identical anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.data.dataset import load_image
from trainer.evaluation.predictions import true_float32
from trainer.export import ExportError
from trainer.export.parity import PIXEL_ATOL, bundle_images

RTOL = 1e-3
CHUNK = 16  # images per run: a batch's distances take images x patches x bank x 4 bytes
TINY = 1e-12  # a score of 0 (an image all of whose patches are in the bank) compares absolutely

Outputs = tuple[np.ndarray, np.ndarray]


def _chunked(run: Callable[[np.ndarray], Outputs], images: np.ndarray) -> Outputs:
    parts = [run(images[i : i + CHUNK]) for i in range(0, len(images), CHUNK)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def reference_anomaly(model: Any, files: list[Path]) -> tuple[np.ndarray, Outputs]:
    """Training's path: the uint8 images ``load_image`` gives, and PatchCore's scores and maps."""
    pre = model.preprocessing
    images = torch.stack([load_image(f, pre["resize"], pre["interpolation"]) for f in files])

    def run(batch: np.ndarray) -> Outputs:
        scores, maps = model(model.normalize(torch.from_numpy(batch)))
        return scores.numpy(), maps.numpy()

    with torch.no_grad(), true_float32():
        return images.numpy(), _chunked(run, images.numpy())


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    """Largest difference of each image's values, relative to its largest reference value."""
    axes = tuple(range(1, want.ndim))
    diff = np.abs(got - want).max(axis=axes) if axes else np.abs(got - want)
    scale = np.abs(want).max(axis=axes) if axes else np.abs(want)
    return float((diff / np.maximum(scale, TINY)).max())


def check_anomaly_parity(
    model: Any, scorer: Any, files: list[Path], program: Any = None, rtol: float = RTOL
) -> dict[str, Any]:
    """Compare the checkpoint's and the bundle's answers on ``files``; raise when they differ.

    Args:
        model: the ``PatchCore`` loaded from the checkpoint, in eval mode.
        scorer: the bundle's ``score.Model``.
        files: image files to score.
        program: the reloaded ``torch.export`` module, compared too when given.
        rtol: largest accepted relative difference of a score (and of a map, to its maximum).
    """
    images, (scores, maps) = reference_anomaly(model, files)
    bundle = bundle_images(scorer, files, "images")
    pixel_diff = int(np.abs(images.astype(int) - bundle.astype(int)).max())

    def onnx(batch: np.ndarray) -> Outputs:
        return scorer.anomaly_arrays(batch, maps=True)

    answers = {"onnx": _chunked(onnx, images), "score.py": _chunked(onnx, bundle)}
    if program is not None:
        with torch.no_grad():
            answers["model.pt2"] = _chunked(
                lambda b: tuple(t.numpy() for t in program(torch.from_numpy(b))), images
            )
    threshold = scorer.operating_point.get("threshold")
    fails = None if threshold is None else (torch.from_numpy(scores) >= threshold).numpy()
    report: dict[str, Any] = {"images": len(files), "pixel_max_abs_diff": pixel_diff, "rtol": rtol}
    for name, (got, got_maps) in answers.items():
        score_diff, map_diff = _relative(got, scores), _relative(got_maps, maps)
        passes = np.array([scorer.passes(s) for s in got])
        differ = 0 if fails is None else int((passes == fails).sum())  # pass where it fails
        report[name] = {
            "score_max_rel_diff": score_diff,
            "map_max_rel_diff": map_diff,
            "pass_fail_differ": differ,
        }
        if score_diff > rtol or map_diff > rtol or differ:
            raise ExportError(
                f"parity: {name} disagrees with the checkpoint on {len(files)} images (largest "
                f"relative difference of a score {score_diff:.2e}, of a map {map_diff:.2e}; "
                f"accepted {rtol:g}; pass/fail decisions that differ: {differ}); the bundle was "
                "not written"
            )
    if fails is not None:  # how close the parity images came to the threshold
        report["closest_to_threshold"] = float(np.abs(scores - np.float32(threshold)).min())
        report["fail"] = int(fails.sum())
    if pixel_diff > PIXEL_ATOL:
        raise ExportError(
            f"parity: score.py's preprocessing differs from training's by {pixel_diff} grey "
            "levels; the bundle was not written"
        )
    return report
