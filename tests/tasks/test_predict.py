"""``python predict.py``: eval's probabilities, pass at the stored threshold, a row per file."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, compose_cfg
from tests.helpers.export_fixtures import tiny_checkpoint
from tests.helpers.predict_fixtures import (
    SHARED,
    boards_folder,
    checkpoint_with_threshold,
    gray_board,
    reference_probs,
    run_predict,
)

CLASSES = ["good", "misplaced_component", "missing_component", "solder_bridge"]
COLUMNS = ["path", "label", *(f"p_{c}" for c in CLASSES), "defect_score", "pass", "error"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp() / SHARED
    base.mkdir(exist_ok=True)
    return base


@pytest.fixture(scope="module")
def with_threshold(shared: Path) -> Path:
    return checkpoint_with_threshold(shared)


def predict_cfg(tmp: Path, ckpt: Path, images: Path | str, *overrides: str):  # noqa: ANN201
    return compose_cfg(
        [f"ckpt_path={ckpt}", f"images={images}", "num_workers=0", *overrides], tmp, "predict"
    )


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def entry_main():  # noqa: ANN201 - predict.py's Hydra main, called with a composed config
    spec = importlib.util.spec_from_file_location("predict_entry", ROOT / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_probabilities_are_evaluations_and_pass_is_at_the_stored_threshold(
    tmp_path: Path, shared: Path, with_threshold: Path
) -> None:
    from trainer.checkpoint.read import load_classifier

    boards = boards_folder(shared, tmp_path / "boards")
    gray = gray_board(tmp_path / "boards" / "gray" / "g.png")
    cfg = predict_cfg(tmp_path, with_threshold, tmp_path / "boards", "batch_size=7")
    assert entry_main()(cfg) is None  # no SystemExit: exit code 0, the corrupt file notwithstanding

    header, rows = read_csv(tmp_path / "run" / "predictions.csv")
    assert header == COLUMNS
    expected = sorted([*boards, gray, tmp_path / "boards" / "broken_0.png"])
    assert [Path(r["path"]) for r in rows] == expected  # hidden and .txt files skipped
    broken = next(r for r in rows if r["path"].endswith("broken_0.png"))
    assert broken["label"] == broken["p_good"] == broken["pass"] == ""
    assert "truncated" in broken["error"]

    scored = [r for r in rows if not r["error"]]
    model = load_classifier(with_threshold)
    ref = reference_probs(model, [Path(r["path"]) for r in scored]).numpy()
    probs = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in scored])
    np.testing.assert_allclose(probs, ref, rtol=0, atol=1e-6)
    assert [r["label"] for r in scored] == [CLASSES[k] for k in ref.argmax(axis=1)]
    score = np.float32(1) - ref[:, 0].astype(np.float32)
    np.testing.assert_allclose([float(r["defect_score"]) for r in scored], score, atol=1e-6)
    threshold = np.float32(model.run_metadata["operating_point"]["threshold"])
    by_hand = ["true" if s < threshold else "false" for s in score]  # defect when s >= threshold
    assert [r["pass"] for r in scored] == by_hand
    assert {"true", "false"} <= set(by_hand)

    written = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert (written["images"], written["scored"], written["unreadable"]) == (18, 17, 1)
    assert [p["path"] for p in written["predictions"]] == [r["path"] for r in rows]
    assert written["operating_point"]["threshold"] == float(threshold)
    drift = written["drift"]  # the gray 80 px board is outside the 64 px RGB contract
    assert drift["verdict"] == "retrain"
    assert "{'L': 1}" in drift["summary"] and "80x80" in drift["summary"]


def test_overlays_and_a_checkpoint_without_operating_point(
    tmp_path: Path, shared: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from trainer.tasks.predict import predict

    board = boards_folder(shared, tmp_path / "all")[0]
    for name in ("a/x.png", "b/c/y.png"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(board, tmp_path / "in" / name)
    shutil.copyfile(tmp_path / "all" / "broken_0.png", tmp_path / "in" / "broken.png")
    with caplog.at_level(logging.WARNING, logger="trainer.tasks.predict"):
        predict(predict_cfg(tmp_path, tiny_checkpoint(shared), tmp_path / "in", "overlay=true"))

    overlays = tmp_path / "run" / "overlays"
    written = sorted(p.relative_to(overlays).as_posix() for p in overlays.rglob("*.png"))
    assert written == ["a/x.png.png", "b/c/y.png.png"]
    with Image.open(overlays / "a" / "x.png.png") as image:
        assert image.width > 2 * 192 and image.height > 192  # board, Grad-CAM, caption
    _, rows = read_csv(tmp_path / "run" / "predictions.csv")
    assert [r["pass"] for r in rows] == ["", "", ""]
    assert all(r["defect_score"] for r in rows if not r["error"])
    assert sum("stores no operating point" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("ckpt", "images", "needle"),
    [
        ("notes", "boards", "ckpt_path: '{tmp}/boards/notes.txt' is not a checkpoint"),
        ("ckpt", "{tmp}/boards/*.jpg", "images: pattern '{tmp}/boards/*.jpg' matches no image"),
        ("ckpt", "{tmp}/nothing", "images: '{tmp}/nothing' is neither an image file nor a folder"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture, ckpt: str, images: str, needle: str
) -> None:
    boards_folder(shared, tmp_path / "boards")
    path = tmp_path / "boards" / "notes.txt" if ckpt == "notes" else tiny_checkpoint(shared)
    images = tmp_path / "boards" if images == "boards" else images.format(tmp=tmp_path)
    with pytest.raises(SystemExit) as exit_:
        entry_main()(predict_cfg(tmp_path, path, images))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle.format(tmp=tmp_path) in err and "\n" not in err, err


def test_nothing_readable_exits_1_with_a_row_per_file(tmp_path: Path, shared: Path) -> None:
    boards_folder(shared, tmp_path / "all", corrupt=2)
    (tmp_path / "in").mkdir()
    for name in ("broken_0.png", "broken_1.png"):
        shutil.copyfile(tmp_path / "all" / name, tmp_path / "in" / name)
    with pytest.raises(SystemExit) as exit_:
        entry_main()(predict_cfg(tmp_path, tiny_checkpoint(shared), tmp_path / "in"))
    assert exit_.value.code == 1
    _, rows = read_csv(tmp_path / "run" / "predictions.csv")
    assert [Path(r["path"]).name for r in rows] == ["broken_0.png", "broken_1.png"]
    assert all("truncated" in r["error"] and not r["label"] for r in rows)


def test_the_command_line_wants_a_checkpoint(tmp_path: Path) -> None:
    result = run_predict("images=.", tmp=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: ckpt_path: required; give ckpt_path=..."]
