"""``python score.py DIR > predictions.csv`` in a bundle: the rows ``python predict.py`` writes.

On the same folder of boards with a corrupt file in it; score.py runs as a user runs it."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import compose_cfg
from tests.helpers.export_fixtures import ISOLATE, site_dirs
from tests.helpers.predict_fixtures import (
    boards_folder,
    bundle_with_threshold,
    checkpoint_with_threshold,
)
from trainer.data.image_folder import IMAGE_EXTENSIONS
from trainer.export.runtime import score as score_template


def score_cli(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    """``python score.py ARGS`` in the bundle folder (``-B``: no __pycache__ in a shared bundle)."""
    return subprocess.run(
        [sys.executable, "-B", "score.py", *args],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=120,
    )


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_score_py_agrees_with_predict(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture
) -> None:
    from trainer.tasks.predict import predict

    bundle = bundle_with_threshold(shared)
    boards_folder(shared, tmp_path / "boards")
    result = score_cli(bundle, str(tmp_path / "boards"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == ["score.py: scored 16 of 17 images"]
    ckpt = checkpoint_with_threshold(shared)
    cfg = [f"ckpt_path={ckpt}", f"images={tmp_path / 'boards'}", "num_workers=0"]
    predict(compose_cfg(cfg, tmp_path, "predict"))  # predict.py's task, in this process
    assert "Scored 16 of 17 images: 8 pass, 8 fail (1 unreadable)" in capsys.readouterr().out

    predicted = (tmp_path / "run" / "predictions.csv").read_text()
    assert result.stdout.splitlines()[0] == predicted.splitlines()[0]  # the same columns
    ours, theirs = rows_of(result.stdout), rows_of(predicted)
    assert [r["path"] for r in ours] == [r["path"] for r in theirs]
    for key in ("label", "pass"):
        assert [r[key] for r in ours] == [r[key] for r in theirs], key
    assert {r["pass"] for r in ours} == {"true", "false", ""}  # "": the corrupt file
    probs = [k for k in theirs[0] if k.startswith("p_")] + ["defect_score"]
    scored = [i for i, r in enumerate(theirs) if not r["error"]]
    a = np.array([[float(ours[i][k]) for k in probs] for i in scored])
    b = np.array([[float(theirs[i][k]) for k in probs] for i in scored])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    (broken,) = [r for r in ours if r["error"]]
    assert broken["path"].endswith("broken_0.png") and "truncated" in broken["error"]


SCRIPT = (
    ISOLATE
    + "import runpy; sys.argv[0] = 'score.py'; runpy.run_path('score.py', run_name='__main__')"
)


def isolated_cli(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    """``score.py ARGS`` where torch and this project cannot be imported."""
    paths = json.dumps([str(bundle), *site_dirs()])
    return subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", SCRIPT, paths, *args],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_nothing_readable_exits_1_and_usage_errors_2(tmp_path: Path, bundle: Path) -> None:
    boards_folder(bundle.parent, tmp_path / "all", corrupt=2)
    result = isolated_cli(bundle, str(tmp_path / "all" / "broken_*.png"))
    assert result.returncode == 1, result.stderr[-2000:]
    rows = rows_of(result.stdout)
    assert [Path(r["path"]).name for r in rows] == ["broken_0.png", "broken_1.png"]
    assert all(r["error"] and not r["label"] for r in rows)

    for args, needle in [
        ([str(tmp_path / "nothing")], f"'{tmp_path / 'nothing'}' is neither an image file"),
        ([str(tmp_path / "*.jpg")], "matches no image file"),
        ([], "the following arguments are required: images"),
    ]:
        result = isolated_cli(bundle, *args)
        assert result.returncode == 2
        assert result.stdout == ""
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("score.py: error: ") and needle in line, line


def test_score_py_reads_the_extensions_the_loader_reads() -> None:
    assert score_template.IMAGE_EXTENSIONS == IMAGE_EXTENSIONS


def test_score_py_finds_the_files_predict_finds(tmp_path: Path) -> None:
    from trainer.data.image_folder import image_files

    names = ["a/1.png", "a/b/2.JPG", "a/.hidden/3.png", "a/.4.png", "a/5.txt", "c/6.webp"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    cases = {
        str(tmp_path / "a"): ["a/1.png", "a/b/2.JPG"],  # recursive; hidden files, .txt skipped
        f"{tmp_path}/**/*.*": ["a/1.png", "a/b/2.JPG", "c/6.webp"],
        f"{tmp_path}/[ac]": ["a/1.png", "a/b/2.JPG", "c/6.webp"],  # a glob matching folders
        str(tmp_path / "a" / "5.txt"): ["a/5.txt"],  # a file named is scored (as an error row)
    }
    for item, expected in cases.items():
        ours = [p.relative_to(tmp_path).as_posix() for p in score_template.image_files([item])]
        theirs = sorted(p.relative_to(tmp_path).as_posix() for p in image_files(item))
        assert ours == theirs == expected, item
