"""Every option of every config group composes, and the objects it names can be built."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

from tests.conftest import CONFIGS, compose_cfg


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml") if p.stem != "default")


@pytest.mark.parametrize("group", ["data", "model", "trainer", "callbacks", "logger", "paths"])
def test_every_option_composes(group: str, tmp_path: Path) -> None:
    names = options(group) or ["default"]
    for name in names:
        overrides = [f"{group}={name}"]
        if group == "data" and name == "folder":
            overrides.append(f"data.root={tmp_path}")
        cfg = compose_cfg(overrides, tmp_path)
        OmegaConf.resolve(cfg)
        assert cfg[group] is not None, f"{group}={name} composed to nothing"


@pytest.mark.parametrize("debug", ["fast", "overfit", "limit"])
def test_debug_modes_compose(debug: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"debug={debug}"], tmp_path)
    assert cfg.task_name == "debug"
    assert cfg.callbacks.early_stopping is None
    assert cfg.trainer.accelerator == "cpu"


def test_experiment_and_hparams_compose(tmp_path: Path) -> None:
    cfg = compose_cfg(["experiment=pcb_defect"], tmp_path)
    assert cfg.data._target_.endswith("PCBDataModule")
    assert cfg.model.backbone == "resnet10t"


@pytest.mark.parametrize("model", options("model"))
def test_every_model_builds(model: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"model={model}", "model.pretrained=false", "model.input_size=64"], tmp_path)
    net = hydra.utils.instantiate(cfg.model, class_names=["good", "bad"])
    assert net.preprocessing["input_size"] == [3, 64, 64]
    logits = net(net.example_input_array)
    assert tuple(logits.shape) == (1, 2)


def test_trainer_configs_instantiate(tmp_path: Path) -> None:
    from trainer.train import build_trainer

    for name in ("default", "cpu"):
        cfg = compose_cfg([f"trainer={name}", "trainer.accelerator=cpu"], tmp_path)
        trainer = build_trainer(cfg, callbacks=[], loggers=[])
        assert trainer.max_epochs == cfg.trainer.max_epochs
        assert trainer.precision == "32-true"
