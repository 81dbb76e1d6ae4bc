"""Multiruns through Hydra's real plugins: submitit's local launcher and the Optuna sweeper."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import CONFIGS
from tests.helpers.runs import run_train, tiny_args


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_grid(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_train(
        [
            "-m",
            "hydra/launcher=local",
            f"hydra.sweep.dir={sweep}",
            *tiny_args(tmp_path, "test=false", "trainer=cpu"),
            "model.optimizer.lr=0.001,0.002",
        ],
        timeout=300,
    )
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file(), job
    configs = [yaml.safe_load((sweep / j / ".hydra" / "config.yaml").read_text()) for j in "01"]
    lrs = {c["model"]["optimizer"]["lr"] for c in configs}
    assert lrs == {0.001, 0.002}
    assert any((sweep / ".submitit").iterdir()), "the jobs did not go through submitit"


@pytest.mark.slow
def test_optuna_sweep_of_three_trials(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    run_train(
        [
            "hparams_search=optuna",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.n_jobs=1",
            *tiny_args(tmp_path, "test=false", "trainer=cpu"),
        ],
        timeout=300,
    )
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["name"] == "optuna"
    assert 0.0 <= result["best_value"] <= 1.0  # val/f1 of the best trial
    # data.batch_size is fixed by the command line (tiny_args), the rest is searched
    assert set(result["best_params"]) == {
        "model",
        "model.optimizer.lr",
        "model.freeze_backbone_epochs",
    }
    trials = sorted(p.name for p in sweep.iterdir() if p.name.isdigit())
    assert trials == ["0", "1", "2"]


def compose_with_hydra(overrides: list[str]):  # noqa: ANN201 - DictConfig
    """The composed config with its ``hydra`` node (conftest's compose_cfg drops it)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_launchers_and_search_compose() -> None:
    cfg = compose_with_hydra(
        ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    )
    slurm = cfg.hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    assert (slurm.nodes, slurm.gpus_per_node, slurm.tasks_per_node) == (2, 4, 4)
    assert {"partition", "account", "qos", "cpus_per_task", "mem_gb", "timeout_min"} <= set(slurm)
    local = compose_with_hydra(["hydra/launcher=local"]).hydra.launcher
    assert local._target_.endswith("LocalLauncher")
    cfg = compose_with_hydra(["hparams_search=optuna"])
    assert cfg.optimized_metric == "val/f1"
    assert cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {
        "model",
        "model.optimizer.lr",
        "data.batch_size",
        "model.freeze_backbone_epochs",
    }
