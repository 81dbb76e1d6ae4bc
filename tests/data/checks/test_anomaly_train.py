"""Defect images in an anomaly model's training split: a warning, a refusal under strict."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.data.test_image_folder import make_tree
from trainer.data.checks.anomaly_train import check_anomaly_training
from trainer.data.datamodule import ImageFolderDataModule
from trainer.errors import DataError
from trainer.utils.entry import run_reporting_errors

ANOMALY = SimpleNamespace(kind="anomaly", class_names=["bad", "good"], good_index=1)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "images", {"good": 12, "bad": 6})


def test_defects_in_training_warn_or_refuse(
    tree: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        check_anomaly_training(ANOMALY, ImageFolderDataModule(tree, validate="warn"))
    bad = ImageFolderDataModule(tree).scan.counts()["train"]["bad"]
    assert f"holds {bad} 'bad' besides 'good'" in caplog.text
    assert "data.train_classes=[good]" in caplog.text
    strict = ImageFolderDataModule(tree, validate="strict")
    with pytest.raises(DataError, match=r"data.validate=strict: .*data.train_classes=\[good\]"):
        check_anomaly_training(ANOMALY, strict)
    with pytest.raises(SystemExit) as stop:  # the entry point: one line, exit 2, [good] kept
        run_reporting_errors(check_anomaly_training, ANOMALY, strict)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: data.validate=strict") and "data.train_classes=[good]" in err


def test_good_only_off_or_a_classifier_pass(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        only_good = ImageFolderDataModule(tree, validate="strict", train_classes=["good"])
        check_anomaly_training(ANOMALY, only_good)
        check_anomaly_training(ANOMALY, ImageFolderDataModule(tree, validate="off"))
        classifier = SimpleNamespace(kind="classifier", class_names=["bad", "good"])
        check_anomaly_training(classifier, ImageFolderDataModule(tree, validate="strict"))
    assert caplog.text == ""


def test_train_refuses_before_fitting(pcb_root: Path, tmp_path: Path) -> None:
    from tests.conftest import compose_cfg
    from tests.helpers.anomaly import ANOMALY as RUN
    from trainer.tasks.train import train

    cfg = compose_cfg([*RUN, f"data.root={pcb_root}", "data.train_classes=null"], tmp_path)
    assert cfg.data.validate == "strict"  # data=folder: the user's data
    with pytest.raises(DataError, match=r"besides 'good'.*data.train_classes=\[good\]"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
