"""The MVTec AD layout (train/good, test/<good or defect kind>, ground_truth/): admitted when
training is restricted to some classes (data.train_classes), refused in one line otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.data.test_image_folder import make_tree
from tests.helpers.anomaly import box_mask
from trainer.data.checks.validation import validate_dataset
from trainer.data.datamodule import ImageFolderDataModule
from trainer.data.image_folder import scan_image_folder
from trainer.errors import DataError


def _mvtec(root: Path) -> Path:
    make_tree(root / "train", {"good": 20})
    make_tree(root / "test", {"good": 3, "crack": 2, "hole": 2}, first=50)
    (root / "ground_truth" / "crack").mkdir(parents=True)
    Image.fromarray(box_mask((40, 40), [4, 4, 9, 9])).save(root / "ground_truth/crack/050_mask.png")
    return root


def test_anomaly_layout_takes_every_split_s_classes(tmp_path: Path) -> None:
    root = _mvtec(tmp_path / "mvtec")
    scan = scan_image_folder(root, val_fraction=0.3, train_classes=["good"])
    assert scan.class_names == ["crack", "good", "hole"]  # union, sorted; ground_truth is none
    counts = scan.counts()
    assert counts["test"] == {"crack": 2, "good": 3, "hole": 2}
    assert counts["train"] == {"crack": 0, "good": counts["train"]["good"], "hole": 0}
    assert counts["val"]["good"] > 0 and counts["val"]["crack"] == counts["val"]["hole"] == 0
    assert counts["train"]["good"] + counts["val"]["good"] == 20  # val carved from train/good
    dm = ImageFolderDataModule(root, val_fraction=0.3, train_classes=["good"])
    assert dm.class_names == scan.class_names and dm.summary()["counts"] == counts


def test_a_classifier_still_refuses_classes_train_lacks(tmp_path: Path) -> None:
    root = _mvtec(tmp_path / "mvtec")
    with pytest.raises(DataError, match=r"\['crack', 'hole'\].*data.train_classes=\[good\]"):
        scan_image_folder(root)
    with pytest.raises(DataError, match="data.train_classes"):
        _ = ImageFolderDataModule(root).class_names


def test_validate_data_follows_train_classes(tmp_path: Path) -> None:
    root = _mvtec(tmp_path / "mvtec")
    plain = validate_dataset(root, perceptual=False)
    assert [f.check for f in plain.findings if f.severity == "fail"] == ["layout"]
    anomaly = validate_dataset(root, perceptual=False, train_classes=["good"])
    assert not anomaly.failed and anomaly.summary["class_names"] == ["crack", "good", "hole"]
