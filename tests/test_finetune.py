"""Refresh: start from an earlier model's weights, same classes, or a new head on purpose."""

from __future__ import annotations

import hashlib
from pathlib import Path

import hydra
import pytest
import torch
from PIL import Image

from trainer.checkpoint import checkpoint_metadata, load_checkpoint
from trainer.errors import CheckpointError, ConfigError
from trainer.finetune import load_parent
from trainer.train import train

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
