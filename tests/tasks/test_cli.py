"""``python train.py`` as a user runs it: bad input gives one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, TINY_BOARDS


def run_train(*overrides: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "train.py", *TINY, f"paths.log_dir={tmp / 'logs'}", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    for needle in needles:
        assert needle in result.stderr, result.stderr[-2000:]


def test_missing_data_root(tmp_path: Path) -> None:
    result = run_train("data=folder", f"data.root={tmp_path / 'nope'}", tmp=tmp_path)
    assert_clean_error(result, "data.root", "nope", "does not exist")
    assert result.returncode == 2


def test_unknown_option_of_a_group(tmp_path: Path) -> None:
    result = run_train("model=resnet19", tmp=tmp_path)
    assert_clean_error(result, "model/resnet19", "Available options")


def test_unknown_config_key(tmp_path: Path) -> None:
    result = run_train("model.no_such_key=3", tmp=tmp_path)
    assert_clean_error(result, "model.no_such_key")


def test_unknown_backbone(tmp_path: Path) -> None:
    result = run_train("model.backbone=resnet19x", tmp=tmp_path)
    assert_clean_error(result, "model.backbone", "resnet19x")


def test_missing_checkpoint(tmp_path: Path) -> None:
    result = run_train(
        *TINY_BOARDS,
        f"paths.data_dir={tmp_path}",
        f"ckpt_path={tmp_path / 'missing.ckpt'}",
        tmp=tmp_path,
    )
    assert_clean_error(result, "missing.ckpt", "does not exist")


@pytest.mark.slow
def test_debug_fast_from_the_command_line(tmp_path: Path) -> None:
    result = run_train(*TINY_BOARDS, f"paths.data_dir={tmp_path}", "debug=fast", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run folder:" in result.stdout
    assert "test/acc" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["scripts/studies/recipe_sweep.py", "nope"], "unknown recipes ['nope']"),
        (["scripts/studies/recipe_sweep.py", "--parallel", "0"], "--parallel must be 1 or more"),
        (["scripts/bench/benchmark.py", "--gpu-parts", "ratoi"], "unknown parts ['ratoi']"),
        (["scripts/bench/memory_bound.py", "--backbones", "resnet10t"], "give a timm model name"),
    ],
)
def test_benchmark_scripts_refuse_bad_options(args: list[str], needle: str) -> None:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
