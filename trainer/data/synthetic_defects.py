"""Synthetic local defects on good images: a labelled set for self-supervised pretraining.

An anomaly model is only as good as its backbone's features, and on a new line there are no
defect labels to train one with. CutPaste (Li et al., "CutPaste: Self-Supervised Learning for
Anomaly Detection and Localization", CVPR 2021, arXiv:2104.04015) makes them from good images
alone: a patch cut from the image and pasted elsewhere (a component where none belongs, or
bare board over a component), or a thin "scar" of another region; a classifier that tells such
images from the good ones learns features of local irregularity, which PatchCore's memory bank
then uses (``model.pretrained_path``). Written from the paper, no code copied.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

GOOD, DEFECT = "good", "synthetic_defect"


def _box(rng: np.random.Generator, h: int, w: int, scar: bool) -> tuple[int, int]:
    """(height, width) of the patch: 1-6% of the image with aspect 1:3 to 3:1, or a thin scar."""
    if scar:
        long, thin = int(rng.integers(h // 8, h // 3 + 1)), int(rng.integers(2, max(3, h // 24)))
        return (long, thin) if rng.random() < 0.5 else (thin, long)
    area = rng.uniform(0.01, 0.06) * h * w
    aspect = math.exp(rng.uniform(math.log(1 / 3), math.log(3)))
    ph = int(min(h - 1, max(2, round(math.sqrt(area * aspect)))))
    return ph, int(min(w - 1, max(2, round(area / ph))))


def cut_paste(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``image`` (H, W, C uint8) with one patch (or scar) of it pasted elsewhere,
    its brightness jittered by up to 10%; the source is never changed."""
    h, w = image.shape[:2]
    ph, pw = _box(rng, h, w, scar=rng.random() < 0.5)
    y0, x0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    patch = image[y0 : y0 + ph, x0 : x0 + pw].astype(np.float32) * rng.uniform(0.9, 1.1)
    while True:  # a destination away from the source: a patch pasted onto itself changes nothing
        y1, x1 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        if abs(y1 - y0) >= ph // 2 + 1 or abs(x1 - x0) >= pw // 2 + 1:
            break
    out = image.copy()
    out[y1 : y1 + ph, x1 : x1 + pw] = np.clip(patch, 0, 255).astype(np.uint8)
    return out


def split_of(name: str, val_share: float, test_share: float) -> str:
    """train, val or test by a hash of the file name: the same file, the same split."""
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if u < test_share else "val" if u < test_share + val_share else "train"


def write_set(
    images: Iterable[Path],
    out: Path,
    seed: int = 0,
    val_share: float = 0.1,
    test_share: float = 0.1,
) -> dict[str, int]:
    """Write each good image and one CutPaste copy of it under ``out/<split>/<class>/`` (PNG);
    return the count per split."""
    counts: dict[str, int] = {}
    for index, path in enumerate(sorted(images)):
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))
        split = split_of(path.name, val_share, test_share)
        rng = np.random.default_rng([seed, index])
        for cls, picture in ((GOOD, pixels), (DEFECT, cut_paste(pixels, rng))):
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(folder / f"{path.stem}.png")
        counts[split] = counts.get(split, 0) + 2
    return counts
