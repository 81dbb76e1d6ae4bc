"""Checkpoints written before the package layout changed still evaluate to the same figures and
still export. The fixture was written by main at commit d9b6538 (2026-12-02, before the move):
``test_resnet``, 64 px generated boards (48/16/16, seed 0), 2 epochs of SGD; the figures it must
give are in ``pre_layout_expected.json``, recorded by ``eval.py`` of that commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compose_cfg
from trainer.checkpoint.read import load_checkpoint
from trainer.data.pcb import PCBSpec, generated_folder
from trainer.export.bundle import export_bundle
from trainer.tasks.evaluate import evaluate

FIXTURES = Path(__file__).parents[1] / "helpers" / "fixtures"
CKPT = FIXTURES / "pre_layout_test_resnet.ckpt"
EXPECTED = FIXTURES / "pre_layout_expected.json"


def evaluate_fixture(tmp_path: Path) -> dict:
    """``python eval.py ckpt_path=<fixture> data.root=<tmp>``: the boards are regenerated from the
    generator settings stored in the checkpoint (the generator is deterministic)."""
    # model_card=false: nothing is written into the fixture folder
    overrides = [f"ckpt_path={CKPT}", f"data.root={tmp_path / 'pcb'}", "model_card=false"]
    cfg = compose_cfg(overrides, tmp_path, "eval")
    cfg.paths.output_dir = str(tmp_path / "eval")
    return evaluate(cfg)


def test_an_old_checkpoint_evaluates_to_its_figures(tmp_path: Path) -> None:
    expected = json.loads(EXPECTED.read_text())
    got = evaluate_fixture(tmp_path)
    assert got["data"]["fingerprint"] == expected["data"]["fingerprint"]  # the same boards
    for key, value in expected["metrics"].items():
        assert got["metrics"][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_an_old_checkpoint_still_exports(tmp_path: Path) -> None:
    evaluate_fixture(tmp_path)  # generates the boards
    generator = load_checkpoint(CKPT)["trainer_metadata"]["config"]["data"]["generator"]
    images = generated_folder(tmp_path / "pcb", PCBSpec(**generator)) / "test"
    out = export_bundle(CKPT, out=tmp_path / "bundle", images=images, parity_images=8)
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    assert manifest["parity"]["score.py"]["labels_identical"]
    assert load_checkpoint(CKPT)["trainer_metadata"]["backbone"] == "test_resnet"
