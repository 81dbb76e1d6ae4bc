"""The parity gate: the bundle's scoring path must give the checkpoint's answers on real images.

Both paths start from the same files. Reference: training's ``load_image`` + ``normalize`` +
the PyTorch network. Bundle: ``score.py``'s decoding and resize + ONNX Runtime. Probabilities
must agree within ``atol``, the labels and the pass/fail decisions at the operating point must be
identical, else the export is refused.

An int8 bundle (``quantize=int8``) passes a gate of its own after that one (``check_int8``): its
labels agree with the checkpoint's on at least ``MIN_AGREEMENT`` of the parity images, and its
defect recall at the operating point, on the checkpoint's val split, is at most
``MAX_RECALL_DROP`` below the float32 graph's. Quantization moves every score a little, so
equality is not asked for; the decisions the line acts on are what is bounded.
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
MIN_AGREEMENT = 0.99  # int8: share of parity images with the checkpoint's label
MAX_RECALL_DROP = 0.01  # int8: defect recall on the val split, below the float32 graph's


def image_files(folder: str | Path, limit: int, option: str = "--images") -> list[Path]:
    """Up to ``limit`` image files below ``folder``, spread evenly over the sorted list."""
    from trainer.data.image_folder import image_files as files_in

    if not Path(folder).expanduser().is_dir():
        raise ExportError(f"{option}: '{folder}' is not a folder of images")
    return _spread(files_in(folder, option=option), limit)


def _spread(files: list[Path], limit: int) -> list[Path]:
    step = max(1, len(files) // max(1, limit))
    return files[::step][:limit]


def checkpoint_data(meta: dict[str, Any], instead: str) -> Any:
    """The data module of the data the checkpoint was trained on, its folder scanned;
    ``instead`` ends the error when the checkpoint records none (what to give instead)."""
    import hydra

    data_cfg = (meta.get("config") or {}).get("data")
    if not data_cfg:
        raise ExportError(f"the checkpoint records no data config; {instead}")
    datamodule = hydra.utils.instantiate(data_cfg)
    datamodule.prepare_data()  # generated boards: regenerated (deterministically) when missing
    return datamodule


def split_files(datamodule: Any, split: str, limit: int | None, instead: str) -> list[Path]:
    """Up to ``limit`` files (None: all) of ``split``, spread over it; an error when it is empty."""
    samples = datamodule.scan.splits.get(split) or []
    if not samples:
        raise ExportError(f"'{datamodule.dataset_root}' has no {split} images; {instead}")
    files = [s.path for s in samples]
    return files if limit is None else _spread(files, limit)


def dataset_test_files(meta: dict[str, Any], limit: int) -> list[Path]:
    """Up to ``limit`` files of the test split of the data the checkpoint was trained on."""
    instead = "give --images DIR for parity"
    return split_files(checkpoint_data(meta, instead), "test", limit, instead)


def reference_probabilities(model: Any, files: list[Path]) -> tuple[torch.Tensor, np.ndarray]:
    """Training's path: ``load_image`` (uint8 images, returned) and the PyTorch network."""
    pre = model.preprocessing
    images = torch.stack([load_image(f, pre["resize"], pre["interpolation"]) for f in files])
    with torch.no_grad():
        return images, model(model.normalize(images)).softmax(-1).numpy()


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
    reference_images, reference = reference_probabilities(model, files)
    bundle = bundle_images(scorer, files, "images")
    pixel_diff = int(np.abs(reference_images.numpy().astype(int) - bundle.astype(int)).max())
    answers = {
        "onnx": scorer.predict_arrays(reference_images.numpy()),  # the graph alone
        "score.py": scorer.predict_arrays(bundle),  # decoding + resize + graph
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


def scored(scorers: list[Any], files: list[Path], option: str, chunk: int = 32) -> list[np.ndarray]:
    """Probabilities of each of ``scorers`` (``score.Model``) on ``files``, through the bundle's
    own decoding and resize, in chunks; an image the bundle refuses is an error naming ``option``."""
    out: list[list[np.ndarray]] = [[] for _ in scorers]
    for start in range(0, len(files), chunk):
        batch = bundle_images(scorers[0], files[start : start + chunk], option)
        for probs, scorer in zip(out, scorers, strict=True):
            probs.append(scorer.predict_arrays(batch))
    return [np.concatenate(p) for p in out]


def bundle_images(scorer: Any, files: list[Path], option: str) -> np.ndarray:
    """The uint8 batch score.py makes of ``files``; its ``InputError`` (a ValueError) as one line."""
    try:
        return np.stack([scorer.preprocess(f.read_bytes(), f.name) for f in files])
    except ValueError as err:
        raise ExportError(
            f"{option}: {err} (the bundle's limits; any_size=true lifts the size range)"
        ) from err


def defect_recall(scorer: Any, probs: np.ndarray, is_defect: np.ndarray) -> float | None:
    """Share of the defective images that fail by score.py's own rule (``decide``) at the
    operating point; None when there is no good class or no defective image."""
    if not is_defect.any() or scorer.operating_point.get("good_class") not in scorer.class_names:
        return None
    fails = np.array([scorer.decide(row)[1] is False for row in probs[is_defect]])
    return float(fails.mean())


def check_int8(
    model: Any,
    int8: Any,
    fp32: Any,
    files: list[Path],
    val: list[tuple[Path, str]],
    min_agreement: float = MIN_AGREEMENT,
    max_recall_drop: float = MAX_RECALL_DROP,
) -> dict[str, Any]:
    """The int8 gate (see the module docstring); its figures, or ExportError when it fails.

    Args:
        model: the ``ImageClassifier`` loaded from the checkpoint, in eval mode.
        int8, fp32: the bundle's ``score.Model`` on the quantized and on the float32 graph.
        files: the parity images (labels compared with the checkpoint's).
        val: the val split's ``(file, class name)``: defect recall of either graph.
        min_agreement: least share of parity images with the checkpoint's label.
        max_recall_drop: largest accepted drop of defect recall, float32 to int8.
    """
    _, reference = reference_probabilities(model, files)
    (int8_probs,) = scored([int8], files, "images")
    agreement = float((int8_probs.argmax(1) == reference.argmax(1)).mean())
    val_probs = scored([fp32, int8], [f for f, _ in val], "val split")
    good = int8.operating_point.get("good_class")
    is_defect = np.array([name != good for _, name in val])
    recall = {
        name: defect_recall(scorer, probs, is_defect)
        for name, scorer, probs in (("fp32", fp32, val_probs[0]), ("int8", int8, val_probs[1]))
    }
    drop = None if recall["fp32"] is None else recall["fp32"] - recall["int8"]
    report = {
        "agreement": agreement,
        "images": len(files),
        "min_agreement": min_agreement,
        "defect_recall": {
            **recall,
            "max_drop": max_recall_drop,
            "rule": int8.operating_point.get("rule"),
        },
        "val_images": len(val),
        "val_defects": int(is_defect.sum()),
        "prob_max_abs_diff_val": float(np.abs(val_probs[0] - val_probs[1]).max()),
    }
    if agreement < min_agreement or (drop is not None and drop > max_recall_drop + 1e-9):
        shown = (
            "not measured (no defective image or no good class)"
            if drop is None
            else f"{recall['int8']:.4f} against {recall['fp32']:.4f} in float32 (may drop by "
            f"{max_recall_drop:g} at most)"
        )
        raise ExportError(
            f"int8: the quantized model gives the checkpoint's label on {agreement:.1%} of "
            f"{len(files)} images (needs >= {min_agreement:.0%}); its defect recall on "
            f"{len(val)} val images is {shown}; the bundle was not written"
        )
    return report
