"""The parity gate: the bundle's scoring path must give the checkpoint's answers on real images.

Both paths start from the same files. Reference: training's ``load_image`` + ``normalize`` +
the PyTorch network. Bundle: ``score.py``'s decoding and resize + ONNX Runtime. Probabilities
must agree within ``atol``, the labels and the pass/fail decisions at the operating point must be
identical, else the export is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.data.dataset import load_image
from trainer.export import ExportError

ATOL = 1e-4
PIXEL_ATOL = 1  # grey levels; the resize port is bit-exact where torch uses its uint8 kernel


def image_files(folder: str | Path, limit: int) -> list[Path]:
    """Up to ``limit`` image files below ``folder``, spread evenly over the sorted list."""
    from trainer.data.image_folder import image_files as files_in

    if not Path(folder).expanduser().is_dir():
        raise ExportError(f"--images: '{folder}' is not a folder of images")
    return _spread(files_in(folder, option="--images"), limit)


def _spread(files: list[Path], limit: int) -> list[Path]:
    step = max(1, len(files) // max(1, limit))
    return files[::step][:limit]


def dataset_test_files(meta: dict[str, Any], limit: int) -> list[Path]:
    """Up to ``limit`` files of the test split of the data the checkpoint was trained on."""
    import hydra

    data_cfg = (meta.get("config") or {}).get("data")
    if not data_cfg:
        raise ExportError("the checkpoint records no data config; give --images DIR for parity")
    datamodule = hydra.utils.instantiate(data_cfg)
    datamodule.prepare_data()  # generated boards: regenerated (deterministically) when missing
    samples = datamodule.scan.splits.get("test") or []
    if not samples:
        raise ExportError(
            f"'{datamodule.dataset_root}' has no test images; give --images DIR for parity"
        )
    return _spread([s.path for s in samples], limit)


def check_parity(
    model: Any, scorer: Any, files: list[Path], program: Any = None, atol: float = ATOL
) -> dict[str, Any]:
    """Compare the checkpoint's and the bundle's answers on ``files``; raise when they differ.

    Args:
        model: the ``ImageClassifier`` loaded from the checkpoint, in eval mode.
        scorer: the bundle's ``score.Model``.
        files: image files to score.
        program: the reloaded ``torch.export`` module, compared too when given.
        atol: largest accepted difference of any probability.
    """
    pre = model.preprocessing
    reference_images = torch.stack(
        [load_image(f, pre["resize"], pre["interpolation"]) for f in files]
    )
    bundle_images = np.stack([scorer.preprocess(f.read_bytes(), f.name) for f in files])
    pixel_diff = int(np.abs(reference_images.numpy().astype(int) - bundle_images.astype(int)).max())
    with torch.no_grad():
        reference = model(model.normalize(reference_images)).softmax(-1).numpy()
    answers = {
        "onnx": scorer.predict_arrays(reference_images.numpy()),  # the graph alone
        "score.py": scorer.predict_arrays(bundle_images),  # decoding + resize + graph
    }
    if program is not None:
        with torch.no_grad():
            answers["model.pt2"] = program(reference_images)[1].numpy()
    report: dict[str, Any] = {"images": len(files), "pixel_max_abs_diff": pixel_diff, "atol": atol}
    passes = _pass_fail(scorer)
    for name, probs in answers.items():
        diff = float(np.abs(probs - reference).max())
        same = bool((probs.argmax(1) == reference.argmax(1)).all())
        report[name] = {"prob_max_abs_diff": diff, "labels_identical": same}
        # the decision the line acts on: a score near the threshold may cross it
        differ = int((passes(probs) != passes(reference)).sum()) if passes else 0
        report[name]["pass_fail_differ"] = differ
        if diff > atol or not same or differ:
            raise ExportError(
                f"parity: {name} disagrees with the checkpoint on {len(files)} images "
                f"(largest probability difference {diff:.2e} > {atol:g}, labels identical: "
                f"{same}, pass/fail decisions that differ: {differ}); the bundle was not written"
            )
    if passes is not None:  # how close the parity images came to the threshold: the tolerance
        scores = np.array([scorer.decide(row)[0] for row in reference])
        gap = np.abs(scores - np.float32(scorer.operating_point["threshold"]))
        report["closest_to_threshold"] = float(gap.min())
    if pixel_diff > PIXEL_ATOL:
        raise ExportError(
            f"parity: score.py's preprocessing differs from training's by {pixel_diff} grey "
            "levels; the bundle was not written"
        )
    return report


def _pass_fail(scorer: Any) -> Any:
    """``probs -> passes`` by score.py's own rule at the recorded operating point (``1 - p(good)
    < threshold``, in float32); None when the bundle has no threshold to decide by."""
    op = getattr(scorer, "operating_point", None) or {}
    if op.get("rule") != "threshold" or op.get("good_class") not in scorer.class_names:
        return None
    return lambda probs: np.array([scorer.decide(row)[1] for row in probs])
