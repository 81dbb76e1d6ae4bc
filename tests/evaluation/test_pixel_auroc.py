"""Pixel AUROC on trees in the MVTec AD layout, against scikit-learn over masks drawn by hand."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from tests.helpers.anomaly import ANOMALY, box_mask, mvtec_tree
from trainer.data.dataset import load_images
from trainer.errors import DataError
from trainer.evaluation.pixel_auroc import pixel_auroc

BOXES = {"a.png": (8, 8, 24, 30), "b.png": (40, 20, 64, 44), "c.png": (0, 50, 16, 64)}


def _tiny_tree(root: Path) -> Path:
    """64 px noise boards: train/good, test/good, test/scratch (a bright box; c.png's mask
    is missing) and ground_truth/scratch; boxes on even pixels, so a 32 px mask is box / 2."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        (root / split / "good").mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 90, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / "good" / f"{i}.png")
    (root / "test" / "scratch").mkdir()
    (root / "ground_truth" / "scratch").mkdir(parents=True)
    for name, box in BOXES.items():
        pixels = rng.integers(0, 90, (64, 64, 3), dtype=np.uint8)
        pixels[box[1] : box[3], box[0] : box[2]] = 250
        Image.fromarray(pixels).save(root / "test" / "scratch" / name)
        if name != "c.png":
            mask = Image.fromarray(box_mask((64, 64), list(box)))
            mask.save(root / "ground_truth" / "scratch" / f"{Path(name).stem}_mask.png")
    return root


def _fitted(data) -> torch.nn.Module:  # noqa: ANN001 - an ImageFolderDataModule
    from trainer.models.patchcore import PatchCore

    torch.manual_seed(0)
    model = PatchCore("test_resnet", data.class_names, pretrained=False, input_size=32).eval()
    data.set_preprocessing(model.preprocessing)
    images = load_images([s.path for s in data.scan.splits["train"]], model.preprocessing)
    model.fit_images(model.normalize(images))
    return model


def test_pixel_auroc_matches_scikit_learn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from trainer.data.datamodule import ImageFolderDataModule

    root = _tiny_tree(tmp_path / "tree")
    data = ImageFolderDataModule(
        root, batch_size=2, num_workers=0, val_fraction=0.4, train_classes=["good"]
    )
    model = _fitted(data)
    with caplog.at_level(logging.WARNING):
        got = pixel_auroc(model, data, "test", torch.device("cpu"))
    assert "1 defect image(s) of split test have no mask" in caplog.text and "c_mask" in caplog.text
    # the reference: the maps image by image, the masks as the boxes halved (64 -> 32 px)
    files = sorted((root / "test" / "good").glob("*.png")) + [
        root / "test" / "scratch" / n for n in ("a.png", "b.png")
    ]
    with torch.no_grad():
        _, maps = model(model.normalize(load_images(files, model.preprocessing)))
    masks = np.zeros((len(files), 32, 32), bool)
    for k, name in enumerate(("a.png", "b.png"), start=3):
        x0, y0, x1, y1 = (v // 2 for v in BOXES[name])
        masks[k, y0:y1, x0:x1] = True
    want = roc_auc_score(masks.ravel(), maps[:, 0].numpy().ravel())
    assert got == pytest.approx(want, abs=1e-6)
    assert data.scan.counts()["val"]["good"] > 0  # carved from train/good: no defect pixel
    assert math.isnan(pixel_auroc(model, data, "val", torch.device("cpu")))


def test_no_ground_truth_no_pixel_auroc_and_a_bad_mask_is_named(tmp_path: Path) -> None:
    from trainer.data.datamodule import ImageFolderDataModule

    root = _tiny_tree(tmp_path / "tree")
    data = ImageFolderDataModule(root, batch_size=4, num_workers=0, train_classes=["good"])
    model = _fitted(data)
    (root / "ground_truth" / "scratch" / "a_mask.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"ground truth: cannot read mask '.*a_mask.png'"):
        pixel_auroc(model, data, "test", torch.device("cpu"))
    for mask in (root / "ground_truth" / "scratch").iterdir():
        mask.unlink()
    (root / "ground_truth" / "scratch").rmdir()
    (root / "ground_truth").rmdir()
    assert pixel_auroc(model, data, "test", torch.device("cpu")) is None


def test_train_on_a_mvtec_tree_reports_pixel_auroc(pcb_root: Path, tmp_path: Path) -> None:
    """train.py on train/good, test/<kind>, ground_truth/: val carved from train/good, the
    threshold by false rejects, and the pixel AUROC in metrics.json equal to scikit-learn's."""
    from tests.conftest import compose_cfg
    from trainer.checkpoint.read import checkpoint_metadata, load_model
    from trainer.tasks.train import train

    tree = mvtec_tree(pcb_root, tmp_path / "mvtec", keep_mask=False)
    metrics = train(compose_cfg([*ANOMALY, f"data.root={tree}"], tmp_path))
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    counts = report["data"]["counts"]
    kinds = sorted(p.name for p in (tree / "test").iterdir())
    assert report["data"]["class_names"] == kinds and "good" in kinds
    assert {c for c, n in counts["train"].items() if n} == {"good"}
    assert {c for c, n in counts["val"].items() if n} == {"good"}
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == len(
        list((tree / "train" / "good").glob("*.png"))
    )
    assert report["operating_point"]["rule"] == "target_false_reject"
    got = report["metrics"]["test/pixel_auroc"]
    assert metrics["test/pixel_auroc"] == pytest.approx(got)

    ckpt = next((tmp_path / "run" / "checkpoints").glob("epoch_*.ckpt"))
    model = load_model(ckpt)
    assert checkpoint_metadata(ckpt)["data"]["counts"]["train"] == counts["train"]
    meta = json.loads((pcb_root / "metadata.json").read_text())
    boxed = {m["path"].split("/")[-1]: m["bbox"] for m in meta["images"] if m["split"] == "test"}
    files = sorted(p for p in (tree / "test").rglob("*.png"))
    masks_there = {p.name.removesuffix("_mask.png") for p in (tree / "ground_truth").rglob("*")}
    files = [f for f in files if f.parent.name == "good" or f.stem in masks_there]
    assert len(files) == len(list((tree / "test").rglob("*.png"))) - 1  # one mask left out
    with torch.no_grad():
        _, maps = model(model.normalize(load_images(files, model.preprocessing)))
    masks = np.stack(
        [
            box_mask((64, 64), boxed[f.name]) > 0
            if f.parent.name != "good"
            else np.zeros((64, 64), bool)
            for f in files
        ]
    )
    assert got == pytest.approx(roc_auc_score(masks.ravel(), maps[:, 0].numpy().ravel()), abs=1e-6)
