"""Preemption: atomic checkpoints, resume=auto, and a run killed with SIGKILL that finishes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests._runs import env, tiny_args, train_cmd
from tests.conftest import ROOT
from trainer.checkpoint import load_checkpoint
from trainer.checkpoint_io import AtomicCheckpointIO
from trainer.errors import ConfigError
from trainer.resume import RngState, auto_resume_path, is_complete, resolve_ckpt_path


def test_a_crash_during_a_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io, target = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 0}, target)

    def dies_mid_write(obj: object, f) -> None:  # noqa: ANN001
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("killed mid-write")

    monkeypatch.setattr("trainer.checkpoint_io.torch.save", dies_mid_write)
    with pytest.raises(OSError, match="mid-write"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 1}, target)
    monkeypatch.undo()
    assert load_checkpoint(target)["epoch"] == 0
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"], "temp file left behind"


def test_resume_auto_picks_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    last = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {}, "epoch": 1}, last)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"  # Lightning's, written on SLURM's requeue signal
    io.save_checkpoint({"state_dict": {}, "epoch": 2}, hpc)
    assert auto_resume_path(tmp_path) == hpc
    hpc.write_bytes(hpc.read_bytes()[:100])  # truncated (an old, non-atomic writer)
    assert not is_complete(hpc)
    assert auto_resume_path(tmp_path) == last
    stale = tmp_path / "checkpoints" / ".last.ckpt.abc.tmp"
    stale.write_bytes(b"half")
    auto_resume_path(tmp_path)
    assert not stale.exists()


def test_resume_modes(tmp_path: Path) -> None:
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "checkpoints/last.ckpt")
    cfg = OmegaConf.create(
        {"paths": {"output_dir": str(tmp_path)}, "train": True, "resume": "auto"}
    )
    assert resolve_ckpt_path(cfg) == str(tmp_path / "checkpoints" / "last.ckpt")
    cfg.ckpt_path = "/explicit.ckpt"
    assert resolve_ckpt_path(cfg) == "/explicit.ckpt"
    cfg.ckpt_path, cfg.resume = None, "never"
    assert resolve_ckpt_path(cfg) is None
    cfg.resume = "sometimes"
    with pytest.raises(ConfigError, match="resume: 'sometimes'"):
        resolve_ckpt_path(cfg)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    import numpy as np

    callback = RngState()
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = callback.state_dict()
    expected = (torch.rand(1).item(), np.random.rand(), random.random())
    torch.save(state, tmp_path / "rng.pt")
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    callback.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == expected


@pytest.mark.slow
def test_a_killed_run_started_again_finishes(tmp_path: Path) -> None:
    run, epochs = tmp_path / "run", 4
    args = tiny_args(
        tmp_path,
        f"trainer.max_epochs={epochs}",
        "test=false",
        f"hydra.run.dir={run}",
        "+callbacks.slow._target_=tests._slow_batches.Slow",
        "+callbacks.slow.seconds=0.4",
    )
    last = run / "checkpoints" / "last.ckpt"
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(train_cmd(args), cwd=ROOT, env=env(), stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 180
            while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert last.exists(), (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.6)  # inside the next epoch (3 batches of >= 0.4 s each)
            assert proc.poll() is None, "the run finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(30)
    killed_at = load_checkpoint(last)["epoch"]
    assert killed_at < epochs - 1

    again = subprocess.run(
        train_cmd(args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"Resuming from {last}" in again.stdout + again.stderr
    done = load_checkpoint(last)
    assert done["epoch"] == epochs - 1
    assert done["global_step"] == epochs * 3  # 48 images / 16 per batch, every epoch once
    assert "RngState" in done["callbacks"]
