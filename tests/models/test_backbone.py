"""Pretrained weights through timm's real loading path; offline never hangs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from trainer.errors import ConfigError, PretrainedWeightsError
from trainer.models.backbone import create_backbone, hub_reachable, preprocessing_of


@pytest.fixture
def weights_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A 'pretrained' test_resnet with a 1000-class head, saved as safetensors."""
    torch.manual_seed(0)
    source = timm.create_model("test_resnet", num_classes=1000)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / "test_resnet.safetensors"
    save_file(state, str(path))
    return path, state


@pytest.mark.parametrize("as_torch_file", [False, True])
def test_local_weights_load_with_new_head(
    weights_file, tmp_path: Path, as_torch_file: bool
) -> None:
    path, state = weights_file
    if as_torch_file:
        path = tmp_path / "weights.pth"
        torch.save(state, path)
    net, loaded = create_backbone("test_resnet", num_classes=3, pretrained_path=str(path))
    assert loaded
    assert net.get_classifier().out_features == 3
    own = net.state_dict()
    backbone_keys = [k for k in state if not k.startswith("fc.")]
    assert backbone_keys
    for key in backbone_keys:
        assert torch.equal(own[key], state[key]), key


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        create_backbone("test_resnet", 2, pretrained_path=str(tmp_path / "nope.safetensors"))


def test_wrong_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"unrelated": torch.zeros(3)}, str(path))
    with pytest.raises(PretrainedWeightsError, match="matches only 0 of"):
        create_backbone("test_resnet", 2, pretrained_path=str(path))


def test_offline_hub_falls_back_quickly(monkeypatch, caplog) -> None:
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    assert not hub_reachable()
    start = time.monotonic()
    net, loaded = create_backbone("resnet18", num_classes=2, pretrained=True)
    assert time.monotonic() - start < 10
    assert not loaded
    assert net.get_classifier().out_features == 2
    assert "random initialisation" in caplog.text


def test_require_pretrained_offline_is_an_error(monkeypatch) -> None:
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsError, match="model.pretrained_path"):
        create_backbone("resnet18", num_classes=2, pretrained=True, require_pretrained=True)


def test_unknown_backbone_names_close_matches() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        create_backbone("resnet19x", num_classes=2, pretrained=False)


def test_preprocessing_follows_the_backbone() -> None:
    net = timm.create_model("resnet18", num_classes=2)
    pre = preprocessing_of(net)
    assert pre["input_size"] == [3, 224, 224]
    assert pre["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert preprocessing_of(net, 96)["resize"] == [96, 96]


def test_not_a_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("not weights")
    with pytest.raises(PretrainedWeightsError, match="could not be loaded"):
        create_backbone("test_resnet", 2, pretrained_path=str(path))


OUR_CHECKPOINT = Path(__file__).parents[1] / "helpers" / "fixtures" / "pre_layout_test_resnet.ckpt"


def test_a_checkpoint_of_ours_gives_its_backbone_and_a_new_head() -> None:
    """model.pretrained_path=<a run's checkpoint>: transfer from one product to another."""
    state = torch.load(OUR_CHECKPOINT, map_location="cpu", weights_only=True)["state_dict"]
    net, loaded = create_backbone("test_resnet", num_classes=7, pretrained_path=str(OUR_CHECKPOINT))
    assert loaded and net.get_classifier().out_features == 7
    head = {id(p) for p in net.get_classifier().parameters()}
    body = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    assert body and all(torch.equal(v, state[f"net.{k}"]) for k, v in body.items())
    trained_head = state["net.fc.weight"]
    assert not any(p.shape == trained_head.shape for p in net.parameters() if id(p) in head)


def test_a_checkpoint_of_another_backbone_is_one_line_naming_both() -> None:
    with pytest.raises(PretrainedWeightsError, match="checkpoint of test_resnet, not of resnet10t"):
        create_backbone("resnet10t", num_classes=4, pretrained_path=str(OUR_CHECKPOINT))
