"""``scripts/explain.py``: PNG files for a checkpoint, the pointing game, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.helpers.explain import explain_cfg
from trainer.errors import DataError


def test_default_images_pngs_and_pointing_game(tiny_ckpt: Path, tmp_path: Path) -> None:
    from trainer.tasks.explain import explain

    result = explain(explain_cfg(tiny_ckpt, tmp_path / "out"))
    out = tmp_path / "out"
    summaries = sorted(out.glob("0*.png"))
    assert len(summaries) == result["images"] == 4
    for png in [*summaries, out / "gradcam.png", out / "worst_mistakes.png"]:
        with Image.open(png) as img:
            img.load()
            assert img.mode == "RGB" and min(img.size) > 100
    assert len(list((out / "feature_maps").glob("*.png"))) == 4
    game = json.loads((out / "pointing_game.json").read_text())
    assert game == result["pointing_game"]
    assert 0 <= game["score"] <= 1 and game["defect_images"] > 0 and game["margin_px"] == 4


def test_images_from_a_folder(tiny_ckpt: Path, pcb_root: Path, tmp_path: Path) -> None:
    from trainer.tasks.explain import explain

    folder = pcb_root / "val" / "solder_bridge"
    result = explain(
        explain_cfg(tiny_ckpt, tmp_path, images=str(folder), worst_mistakes=0, pointing_game=False)
    )
    assert result["images"] == len(list(folder.glob("*.png"))) > 0


def test_missing_images_is_a_data_error(tiny_ckpt: Path, tmp_path: Path) -> None:
    from trainer.tasks.explain import explain

    with pytest.raises(DataError, match="images: '.*nope' is neither an image file nor a folder"):
        explain(explain_cfg(tiny_ckpt, tmp_path, images=str(tmp_path / "nope")))


def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/explain.py",
            f"ckpt_path={bad}",
            f"out_dir={tmp_path / 'o'}",
            f"hydra.run.dir={tmp_path / 'h'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "bad.ckpt" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
