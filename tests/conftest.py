"""Shared fixtures: compose the real Hydra configs with tiny sizes into temporary folders."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network

# A tiny board set and a tiny timm model: the whole pipeline in seconds.
TINY = [
    "model.backbone=test_resnet",
    "model.input_size=64",
    "model.pretrained=false",
    "data.batch_size=16",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "callbacks.rich_progress_bar=null",
    "callbacks.rich_model_summary=null",
    "print_config=false",
    "report_html=false",  # a second a run; tests/evaluation/test_html_report.py turns it on
]
TINY_BOARDS = [
    "data.generator.image_size=64",
    "data.generator.num_train=48",
    "data.generator.num_val=16",
    "data.generator.num_test=16",
]


def compose_cfg(overrides: list[str], tmp: Path, config_name: str = "train") -> DictConfig:
    """Compose ``config_name`` as Hydra would for a run whose folder is ``tmp/run``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp / "run")
        cfg.paths.log_dir = str(tmp / "logs")
        del cfg["hydra"]
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``tiny_cfg(*overrides)``: the default experiment at tiny size, data and run in tmp_path."""

    def make(*overrides: str) -> DictConfig:
        boards = [] if "data=folder" in overrides else TINY_BOARDS
        base = [*TINY, *boards, f"paths.data_dir={tmp_path / 'data'}"]
        return compose_cfg([*base, *overrides], tmp_path)

    return make


@pytest.fixture(scope="session")
def pcb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated board set (64 px) shared by the tests that only read it."""
    from trainer.data.pcb import PCBSpec, generate_dataset

    root = tmp_path_factory.mktemp("pcb") / "boards"
    spec = PCBSpec(image_size=64, num_train=48, num_val=16, num_test=16, seed=3)
    return generate_dataset(root, spec, progress=False)
