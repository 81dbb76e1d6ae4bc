"""A small image tree with every bad case the data checks must find (shared by the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# relative path -> (check, a word the reason must contain)
BAD_CASES = {
    "train/good/truncated.png": ("unreadable", "decode"),
    "train/good/zero.jpg": ("unreadable", "zero bytes"),
    "train/bad/text.png": ("unreadable", "text"),
    "train/bad/cmyk.jpg": ("mode", "CMYK"),
    "train/good/deep16.png": ("mode", "I;16"),
    "train/bad/alpha.png": ("mode", "RGBA"),
    "train/good/really_a_jpeg.png": ("type_mismatch", "JPEG"),
    "train/good/notes.txt": ("stray_file", "not an image"),
    "train/empty_class": ("empty_class", "no images"),
    "train/good/img_000.png": ("leakage", "test"),
}


def _noise(rng: np.random.Generator, size: int = 24) -> np.ndarray:
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8)


def make_bad_tree(root: Path) -> Path:
    """``root/{train,test}/{good,bad}`` of 24 px noise images plus every case of BAD_CASES."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for name in ("good", "bad"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_noise(rng)).save(folder / f"img_{i:03d}.png")
    good, bad = root / "train" / "good", root / "train" / "bad"
    data = (good / "img_001.png").read_bytes()
    (good / "truncated.png").write_bytes(data[: len(data) // 2])
    (good / "zero.jpg").write_bytes(b"")
    (bad / "text.png").write_text("this is a text file, not a picture\n")
    Image.new("CMYK", (24, 24), (0, 120, 255, 10)).save(bad / "cmyk.jpg")
    deep = (np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 100).astype(np.uint16)
    Image.fromarray(deep).save(good / "deep16.png")
    Image.fromarray(_noise(rng)).convert("RGBA").save(bad / "alpha.png")
    Image.fromarray(_noise(rng)).save(good / "really_a_jpeg.png", format="JPEG")
    (good / "notes.txt").write_text("labelled by Ann\n")
    (root / "train" / "empty_class").mkdir()
    (root / "test" / "good" / "copy_of_train.png").write_bytes((good / "img_000.png").read_bytes())
    return root
