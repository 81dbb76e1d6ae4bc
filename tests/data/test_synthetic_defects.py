"""The self-supervised set: CutPaste copies of good images, written beside them, sources untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.data.synthetic_defects import DEFECT, GOOD, cut_paste, write_set

ROOT = Path(__file__).resolve().parents[2]


def board(seed: int, side: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def test_cut_paste_changes_one_region_and_leaves_the_source() -> None:
    image = board(0)
    before = image.copy()
    out = cut_paste(image, np.random.default_rng(1))
    assert np.array_equal(image, before)
    changed = np.argwhere((out != image).any(-1))
    assert len(changed) > 0
    (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
    box = (y1 - y0 + 1) * (x1 - x0 + 1)
    assert len(changed) <= box <= 0.07 * 64 * 64 or min(y1 - y0, x1 - x0) < 64 // 24 + 1
    again = cut_paste(image, np.random.default_rng(1))
    assert np.array_equal(out, again)  # the same seed, the same defect


def test_write_set_pairs_every_image_with_its_defect(tmp_path: Path) -> None:
    src = tmp_path / "good"
    src.mkdir()
    for i in range(12):
        Image.fromarray(board(i)).save(src / f"b{i:02d}.png")
    sources = {p.name: p.read_bytes() for p in src.iterdir()}
    counts = write_set(sorted(src.iterdir()), tmp_path / "out")
    written = sorted((tmp_path / "out").glob("*/*/*.png"))
    assert sum(counts.values()) == len(written) == 24
    for split in counts:
        good = {p.name for p in (tmp_path / "out" / split / GOOD).iterdir()}
        assert good == {p.name for p in (tmp_path / "out" / split / DEFECT).iterdir()}
    assert {p.name: p.read_bytes() for p in src.iterdir()} == sources


def test_script_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    Image.fromarray(board(0)).save(tmp_path / "a.png")
    script = [sys.executable, str(ROOT / "scripts" / "make_synthetic_defects.py")]
    for args, says in (
        ([str(tmp_path / "missing"), str(tmp_path / "o1")], "missing"),
        ([str(tmp_path / "a.png"), str(tmp_path / "full")], "not empty"),
    ):
        done = subprocess.run([*script, *args], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], done.stderr
    assert (tmp_path / "full" / "x.txt").read_text() == "mine"
