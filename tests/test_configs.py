"""Every option of every config group composes, and the objects it names can be built."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from tests.conftest import CONFIGS, TINY, TINY_BOARDS, compose_cfg
from trainer.errors import ConfigError


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml") if p.stem != "default")


@pytest.mark.parametrize("group", ["data", "model", "trainer", "callbacks", "logger", "paths"])
def test_every_option_composes(group: str, tmp_path: Path) -> None:
    names = [n for n in options(group) if n != "none"] or ["default"]  # none: its own tests
    for name in names:
        overrides = [f"{group}={name}"]
        if group == "data" and name == "folder":
            overrides.append(f"data.root={tmp_path}")
        cfg = compose_cfg(overrides, tmp_path)
        OmegaConf.resolve(cfg)
        assert cfg[group] is not None, f"{group}={name} composed to nothing"


# ----------------------------------------------------------------------------- callbacks
# What configs/callbacks/default.yaml composed before it was split into one file per callback,
# in this order (the order Lightning calls them in).
CALLBACKS = [
    "model_checkpoint",
    "last_checkpoint",
    "rng_state",
    "early_stopping",
    "stop_at_target",
    "lr_monitor",
    "backbone_freeze",
    "weight_histograms",
    "sample_images",
    "explain_images",
    "worst_mistakes",
    "embedding_projector",
    "rich_progress_bar",
    "rich_model_summary",
]
OPT_IN = ["anomaly_maps"]  # switched on by an experiment (experiment=pcb_anomaly), not by default


def _built(cfg) -> list[str]:  # noqa: ANN001 - a DictConfig
    from trainer.utils.instantiate import instantiate_group

    return [type(c).__name__ for c in instantiate_group(cfg.get("callbacks"))]


def test_default_callbacks_are_one_file_each(tmp_path: Path) -> None:
    assert options("callbacks") == sorted([*CALLBACKS, *OPT_IN, "none"])
    cfg = compose_cfg([], tmp_path)
    assert list(cfg.callbacks) == CALLBACKS
    assert all("_target_" in cfg.callbacks[name] for name in CALLBACKS)
    for name in CALLBACKS:  # each file alone gives its callback alone, as default.yaml has it
        alone = compose_cfg([f"callbacks={name}", "~experiment"], tmp_path)
        assert list(alone.callbacks) == [name]
        if name != "early_stopping":  # the default experiment changes its patience
            assert alone.callbacks[name] == cfg.callbacks[name], name


def test_every_callback_key_is_commented() -> None:
    for path in sorted((CONFIGS / "callbacks").glob("*.yaml")):
        for line in path.read_text().splitlines():
            key = line.split("#", 1)[0]
            if key.startswith("  ") and ":" in key and "_target_" not in key:
                assert "#" in line, f"{path.name}: {line.strip()} has no comment"


def test_a_subset_of_callbacks_composes_just_those(tmp_path: Path) -> None:
    cfg = compose_cfg(["callbacks=[model_checkpoint,rng_state]", "~experiment"], tmp_path)
    assert list(cfg.callbacks) == ["model_checkpoint", "rng_state"]
    with_experiment = compose_cfg(["callbacks=[rng_state,early_stopping]"], tmp_path)
    assert with_experiment.callbacks.early_stopping.patience == 4
    assert _built(with_experiment) == ["RngState", "EarlyStopping"]
    # the experiment's `callbacks.early_stopping.patience` lands even where the callback is not
    # chosen: without a _target_ it builds nothing
    assert _built(compose_cfg(["callbacks=[model_checkpoint,rng_state]"], tmp_path)) == [
        "BestCheckpoint",
        "RngState",
    ]


def test_callbacks_none_composes_and_trains_without_callbacks(tmp_path: Path) -> None:
    from trainer.tasks.train import train

    assert dict(compose_cfg(["callbacks=none", "~experiment"], tmp_path).get("callbacks", {})) == {}
    # TINY switches two callbacks off by name: with none there are no names to switch off
    tiny = [o for o in TINY if not o.startswith("callbacks.")]
    data = [*TINY_BOARDS, f"paths.data_dir={tmp_path / 'data'}"]
    # no ModelCheckpoint at all, not even Lightning's own: no best checkpoint to test or report on
    off = "+trainer.enable_checkpointing=false"
    cfg = compose_cfg([*tiny, *data, "callbacks=none", off], tmp_path)
    assert _built(cfg) == []
    metrics = train(cfg)
    assert 0 <= metrics["val/f1"] <= 1 and 0 <= metrics["test/acc"] <= 1, metrics
    assert not list(Path(cfg.paths.output_dir).rglob("*.ckpt"))


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


CLASSIFIERS = [m for m in options("model") if m != "patchcore"]


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_every_model_builds(model: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"model={model}", "model.pretrained=false", "model.input_size=64"], tmp_path)
    net = hydra.utils.instantiate(cfg.model, class_names=["good", "bad"])
    assert net.preprocessing["input_size"] == [3, 64, 64]
    logits = net(net.example_input_array)
    assert tuple(logits.shape) == (1, 2)


def test_anomaly_experiment_builds_patchcore(tmp_path: Path) -> None:
    cfg = compose_cfg(["experiment=pcb_anomaly", "model.pretrained=false"], tmp_path)
    assert list(cfg.data.train_classes) == ["good"] and cfg.trainer.max_epochs == 1
    assert list(cfg.callbacks)[-1] == "anomaly_maps" and cfg.callbacks.model_checkpoint
    net = hydra.utils.instantiate(cfg.model, class_names=["good", "bad"], input_size=64)
    scores, maps = net(net.example_input_array)  # before fitting: zeros, the right shapes
    assert scores.shape == (1,) and maps.shape == (1, 1, 64, 64)


def test_a_classifier_experiment_on_patchcore_is_one_line(tmp_path: Path) -> None:
    from trainer.tasks.train import instantiate_model

    cfg = compose_cfg(["model=patchcore", "model.pretrained=false"], tmp_path)  # + pcb_defect
    with pytest.raises(ConfigError, match=r"model\.\w+: .*PatchCore takes no such option"):
        instantiate_model(cfg, class_names=["good", "bad"], input_size=64)


def test_trainer_configs_instantiate(tmp_path: Path) -> None:
    from trainer.tasks.train import build_trainer

    for name in ("default", "cpu"):
        cfg = compose_cfg([f"trainer={name}", "trainer.accelerator=cpu"], tmp_path)
        trainer = build_trainer(cfg, callbacks=[], loggers=[])
        assert trainer.max_epochs == cfg.trainer.max_epochs
        assert trainer.precision == "32-true"


# ----------------------------------------------------------------------------- defaults by data
def _targets(augment) -> list[str]:  # noqa: ANN001 - a ListConfig
    return [str(t["_target_"]).rsplit(".", 1)[-1] for t in augment or []]


# Transforms that can change what an image shows (a mirrored "b" is a "d", a turned arrow
# points elsewhere): only data or an experiment that knows its labels survive them may ask.
GEOMETRIC = ("Flip", "Rotat", "Affine", "Perspective", "Elastic")


def test_the_default_run_is_the_pcb_experiment(tmp_path: Path) -> None:
    cfg = compose_cfg([], tmp_path)
    assert HydraConfig.get().runtime.choices["experiment"] == "pcb_defect"
    assert cfg.data._target_.endswith("PCBDataModule")
    assert cfg.model.input_size == 96 and cfg.model.model_kwargs.global_pool == "max"
    assert cfg.model.optimizer.lr == 3e-3 and cfg.trainer.max_epochs == 8
    assert _targets(cfg.data.augment) == ["RandomHorizontalFlip", "RandomVerticalFlip"]
    explicit = compose_cfg(["experiment=pcb_defect"], tmp_path)
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(explicit)


def test_folder_data_gets_neutral_defaults(tmp_path: Path) -> None:
    cfg = compose_cfg(["data=folder", f"data.root={tmp_path}"], tmp_path)
    assert cfg.data._target_.endswith("ImageFolderDataModule")
    assert not any(g in t for t in _targets(cfg.data.augment) for g in GEOMETRIC)
    assert list(cfg.data.augment) == []
    model = OmegaConf.load(CONFIGS / "model" / "default.yaml")
    trainer = OmegaConf.load(CONFIGS / "trainer" / "default.yaml")
    assert cfg.model.input_size == "auto"  # from the training images (train.py)
    assert dict(cfg.model.model_kwargs) == {}  # the backbone's own pooling
    assert cfg.model.optimizer.lr == model.optimizer.lr
    assert cfg.trainer.max_epochs == trainer.max_epochs
    assert "pcb" not in cfg.tags


def test_folder_data_with_the_experiment_named_gets_it(tmp_path: Path) -> None:
    cfg = compose_cfg(["data=folder", f"data.root={tmp_path}", "experiment=pcb_defect"], tmp_path)
    assert cfg.data._target_.endswith("ImageFolderDataModule") and cfg.data.root == str(tmp_path)
    assert cfg.model.input_size == 96 and cfg.model.model_kwargs.global_pool == "max"
    assert cfg.model.optimizer.lr == 3e-3 and cfg.trainer.max_epochs == 8
    assert list(cfg.data.augment) == []  # augmentation stays the data's choice
    flips = compose_cfg(
        ["data=folder", f"data.root={tmp_path}", "experiment=pcb_defect", "data/augment=flips"],
        tmp_path,
    )
    assert _targets(flips.data.augment) == ["RandomHorizontalFlip", "RandomVerticalFlip"]


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("none", []),
        ("flips", ["RandomHorizontalFlip", "RandomVerticalFlip"]),
        ("inspection", ["RandomHorizontalFlip", "RandomVerticalFlip", "RandomQuarterTurn"]),
        ("photo", ["RandomResizedCropSameSize", "RandomHorizontalFlip"]),
    ],
)
@pytest.mark.parametrize("data", ["pcb", "folder"])
def test_an_augment_preset_is_what_the_run_gets(tmp_path: Path, preset, expected, data) -> None:
    """``data/augment=<preset>`` wins over data=pcb's flips and the experiment; each preset
    builds and keeps a uint8 image's size."""
    cfg = compose_cfg([f"data={data}", f"data.root={tmp_path}", f"data/augment={preset}"], tmp_path)
    assert _targets(cfg.data.augment) == expected
    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    for transform in hydra.utils.instantiate(cfg.data.augment):
        out = transform(image)
        assert out.shape == image.shape and out.dtype == torch.uint8


def test_pcb_data_without_the_experiment_keeps_its_own_flips(tmp_path: Path) -> None:
    cfg = compose_cfg(["~experiment"], tmp_path)
    assert HydraConfig.get().runtime.choices.get("experiment") is None
    assert cfg.model.input_size == "auto" and cfg.trainer.max_epochs != 8
    # a board's class survives a mirror: a missing part stays missing
    assert _targets(cfg.data.augment) == ["RandomHorizontalFlip", "RandomVerticalFlip"]


# ----------------------------------------------------------------------------- defaults order
GATED = """\
# @package _global_
gate:
  min: {test/f1: 0.9}
operating_point:
  target_recall: 0.95
history:
  journal_mode: delete
"""


def test_an_experiment_overrides_the_evaluation_defaults(tmp_path: Path) -> None:
    (tmp_path / "extra" / "experiment").mkdir(parents=True)
    (tmp_path / "extra" / "experiment" / "gated.yaml").write_text(GATED)
    search = f"hydra.searchpath=[file://{tmp_path / 'extra'}]"
    cfg = compose_cfg([search, "experiment=gated"], tmp_path)
    assert dict(cfg.gate.min) == {"test/f1": 0.9} and cfg.gate.max is None
    assert cfg.operating_point.target_recall == 0.95
    assert cfg.history.journal_mode == "delete"


@pytest.mark.parametrize("debug", ["fast", "overfit", "limit"])
def test_debug_runs_keep_their_history_in_their_own_folder(debug: str, tmp_path: Path) -> None:
    shared = compose_cfg([], tmp_path)
    assert Path(shared.history.path) == tmp_path / "logs" / "history.sqlite"
    cfg = compose_cfg([f"debug={debug}"], tmp_path)
    assert Path(cfg.history.path) == Path(cfg.paths.output_dir) / "history.sqlite"


def test_the_history_names_only_an_experiment_that_was_applied(tmp_path: Path) -> None:
    """``data=folder`` selects the optional ``folder_defect``, which does not exist: Hydra still
    lists it among the choices, the run history must not."""
    from hydra import compose, initialize_config_dir

    from trainer.utils.hydra_run import experiment_name as _experiment

    for overrides, expected in (([], "pcb_defect"), (["data=folder", "data.root=x"], None)):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            assert _experiment() == expected, overrides
