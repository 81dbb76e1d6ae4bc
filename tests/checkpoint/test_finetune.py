"""Refresh: start from an earlier model's weights, same classes, or a new head on purpose."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import compose_cfg
from trainer.checkpoint import finetune
from trainer.checkpoint.finetune import exclude_parent_training_images, load_parent
from trainer.checkpoint.read import checkpoint_metadata, load_checkpoint
from trainer.data.datamodule import ImageFolderDataModule
from trainer.data.image_folder import scan_image_folder
from trainer.errors import CheckpointError, ConfigError, DataError
from trainer.tasks.evaluate import evaluate
from trainer.tasks.train import train

QUIET = ("callbacks.sample_images=null", "callbacks.weight_histograms=null", "~logger")


@pytest.fixture
def parent(tiny_cfg) -> tuple[Path, dict[str, float]]:
    cfg = tiny_cfg("trainer.max_epochs=1", "data.augment=[]", *QUIET)
    metrics = train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", metrics


def two_classes(root: Path) -> Path:
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (32, 32), (200 * c, 10 * i, 0)).save(root / name / f"{i}.png")
    return root


def test_finetune_starts_from_the_parent_weights(parent, tiny_cfg, tmp_path: Path) -> None:
    path, parent_metrics = parent
    # No training: testing the loaded weights must give the parent's own test metrics.
    child = tiny_cfg(f"finetune_from={path}", "train=false", "data.augment=[]", *QUIET)
    child.paths.output_dir = str(tmp_path / "child")
    metrics = train(child)
    assert metrics["test/acc"] == pytest.approx(parent_metrics["test/acc"])
    assert metrics["test/loss"] == pytest.approx(parent_metrics["test/loss"], rel=1e-5)


def test_finetune_records_the_parent(parent, tiny_cfg, tmp_path: Path) -> None:
    path, _ = parent
    child = tiny_cfg(f"finetune_from={path}", "test=false", *QUIET)
    child.paths.output_dir = str(tmp_path / "child")
    train(child)
    ckpt_path = tmp_path / "child" / "checkpoints" / "last.ckpt"
    lineage = checkpoint_metadata(ckpt_path)["parent_checkpoint"]
    assert lineage["path"] == str(path.resolve())
    assert lineage["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert lineage["fingerprint"] == checkpoint_metadata(path)["data"]["fingerprint"]
    assert lineage["excluded"] == {"val": 0, "test": 0}  # same boards: no parent image in test
    assert load_checkpoint(ckpt_path)["epoch"] == 0, "the parent's epoch must not carry over"


def test_other_classes_are_refused_unless_the_head_is_reset(
    parent, tiny_cfg, tmp_path: Path
) -> None:
    path, _ = parent
    other = two_classes(tmp_path / "other")
    child = tiny_cfg("data=folder", f"data.root={other}", f"finetune_from={path}", *QUIET)
    child.paths.output_dir = str(tmp_path / "child")  # not the parent's folder (resume=auto)
    with pytest.raises(CheckpointError, match="reset_head=true"):
        train(child)

    cfg = tiny_cfg("data=folder", f"data.root={other}", "data.good_class=null")
    model = hydra.utils.instantiate(cfg.model, class_names=["cat", "dog"])
    lineage = load_parent(model, path, reset_head=True)
    assert lineage["reset_head"] and lineage["class_names"][0] == "good"
    state = load_checkpoint(path)["state_dict"]
    assert torch.equal(model.state_dict()["net.conv1.0.weight"], state["net.conv1.0.weight"])
    assert model.net.get_classifier().out_features == 2
    assert model.pretrained_loaded, "a parent's backbone counts as pretrained (head-only epochs)"


def test_finetune_refuses_bad_parents(parent, tiny_cfg, tmp_path: Path) -> None:
    path, _ = parent
    child = tiny_cfg(f"finetune_from={tmp_path / 'nope.ckpt'}", *QUIET)
    child.paths.output_dir = str(tmp_path / "child")
    with pytest.raises(CheckpointError, match="does not exist"):
        train(child)
    with pytest.raises(CheckpointError, match="model.backbone=test_resnet"):
        cfg = tiny_cfg("model.backbone=test_efficientnet", "data.augment=[]")
        load_parent(hydra.utils.instantiate(cfg.model, class_names=["a", "b", "c", "d"]), path)
    with pytest.raises(ConfigError, match="keep one"):
        train(tiny_cfg(f"finetune_from={path}", f"ckpt_path={path}", *QUIET))


def noise_tree(root: Path, counts: dict[str, int], seed: int, prefix: str = "") -> Path:
    """Distinct 32 px noise images, ``root/<class>/<prefix><i>.png``."""
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{prefix}{i:03d}.png")
    return root


def _sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_the_child_is_never_scored_on_its_parents_training_images(
    tiny_cfg, tmp_path: Path, caplog, monkeypatch
) -> None:
    folder = ("data=folder", "data.augment=[]", "test=false", *QUIET)
    old = noise_tree(tmp_path / "v1", {"good": 30, "bad": 30}, seed=1)
    cfg = tiny_cfg(*folder, f"data.root={old}")
    train(cfg)
    parent_ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    trained = set(checkpoint_metadata(parent_ckpt)["data"]["trained_on_sha256_16"])
    assert len(trained) == sum(checkpoint_metadata(parent_ckpt)["data"]["counts"]["train"].values())

    new = tmp_path / "v2"  # every old image under a new name in a new root, and new images
    for path in old.rglob("*.png"):
        (new / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, new / path.parent.name / f"renamed_{path.name}")
    noise_tree(new, {"good": 20, "bad": 20}, seed=2, prefix="fresh_")
    plain = scan_image_folder(new)  # the child's split before the exclusion
    leaked = {s: sum(_sha16(x.path) in trained for x in plain.splits[s]) for s in ("val", "test")}
    assert leaked["test"] > 0 and leaked["val"] > 0, "the tree must put parent images in val/test"

    seen = {}

    def spy(datamodule, meta):
        seen["datamodule"] = datamodule
        return exclude_parent_training_images(datamodule, meta)

    monkeypatch.setattr(finetune, "exclude_parent_training_images", spy)
    child = tiny_cfg(*folder, f"data.root={new}", f"finetune_from={parent_ckpt}")
    child.paths.output_dir = str(tmp_path / "child")
    train(child)

    splits = seen["datamodule"].scan.splits
    for split in ("val", "test"):
        assert not {_sha16(x.path) for x in splits[split]} & trained, split
        before = len(plain.splits[split])
        assert len(splits[split]) == before - leaked[split] > 0
        assert (
            f"finetune_from: {leaked[split]} of {before} {split} images were in the parent's "
            f"training set: excluded from {split}"
        ) in caplog.text
    assert [x.path for x in splits["train"]] == [x.path for x in plain.splits["train"]]
    meta = checkpoint_metadata(tmp_path / "child" / "checkpoints" / "last.ckpt")
    assert meta["parent_checkpoint"]["excluded"] == leaked
    assert sum(meta["data"]["counts"]["test"].values()) == len(splits["test"])
    assert trained <= set(meta["data"]["trained_on_sha256_16"]), "the grandchild checks these too"

    # eval.py rebuilds the child's data from its config: the parent's images stay out there too
    ecfg = compose_cfg(
        [f"ckpt_path={tmp_path / 'child' / 'checkpoints' / 'last.ckpt'}"], tmp_path, "eval"
    )
    ecfg.paths.output_dir = str(tmp_path / "eval")
    caplog.clear()
    report = evaluate(ecfg)
    assert report["metrics"]["test/num_images"] == len(splits["test"])
    before = len(plain.splits["test"])
    assert (
        f"eval: {leaked['test']} of {before} test images were in the model's training set"
    ) in caplog.text

    # a folder of nothing but the parent's training images, renamed: nothing left to score
    seen = tmp_path / "seen"
    for path in old.rglob("*.png"):
        if _sha16(path) in trained:
            (seen / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, seen / path.parent.name / f"copy_{path.name}")
    ecfg = compose_cfg(
        [f"ckpt_path={parent_ckpt}", "data=folder", f"data.root={seen}", "split=all"],
        tmp_path,
        "eval",
    )
    with pytest.raises(DataError, match="every image of data.root .* is one the model trained"):
        evaluate(ecfg)


def test_an_unrecorded_parent_warns_and_an_emptied_split_is_refused(tmp_path: Path, caplog) -> None:
    dm = ImageFolderDataModule(noise_tree(tmp_path / "data", {"good": 20, "bad": 20}, seed=3))
    assert exclude_parent_training_images(dm, {"data": {"fingerprint": "older"}}) is None
    assert "cannot check that val and test hold none of them" in caplog.text
    test_images = [_sha16(x.path) for x in dm.scan.splits["test"]]
    with pytest.raises(DataError, match=r"all \d+ test images .* add images the parent did not"):
        exclude_parent_training_images(dm, {"data": {"trained_on_sha256_16": test_images}})
