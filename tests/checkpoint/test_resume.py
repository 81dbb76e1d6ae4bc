"""Preemption: atomic checkpoints, resume=auto, the random states (killed runs: test_resume_exact)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from trainer.callbacks.rng_state import RngState
from trainer.checkpoint.atomic_io import AtomicCheckpointIO
from trainer.checkpoint.read import load_checkpoint
from trainer.checkpoint.resume import auto_resume_path, is_complete, resolve_ckpt_path
from trainer.errors import ConfigError


def test_a_crash_during_a_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io, target = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 0}, target)

    def dies_mid_write(obj: object, f) -> None:  # noqa: ANN001
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("killed mid-write")

    monkeypatch.setattr("trainer.checkpoint.atomic_io.torch.save", dies_mid_write)
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


def test_rng_state_is_set_back_at_the_first_batch_not_when_loaded(tmp_path: Path) -> None:
    """Between loading a checkpoint and the first batch, fit-start hooks draw random numbers
    (SampleImages augments images; the module's or another callback's on_train_start may) that
    the uninterrupted run drew long before its checkpoint."""
    import random

    import numpy as np

    callback = RngState()
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = callback.state_dict()
    expected = (torch.rand(1).item(), np.random.rand(), random.random())
    torch.save(state, tmp_path / "rng.pt")  # weights_only: plain tensors and lists
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    callback.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    torch.rand(8), np.random.rand(8), random.random()  # a fit-start callback's draws
    callback.on_train_start(None, None)
    torch.rand(8)  # on_train_start hooks that run after this one
    callback.on_train_batch_start(None, None, None, 0)
    assert (torch.rand(1).item(), np.random.rand(), random.random()) == expected
    torch.manual_seed(3)
    draw = torch.rand(1).item()
    torch.manual_seed(3)
    callback.on_train_batch_start(None, None, None, 1)  # once: later batches go on drawing
    assert torch.rand(1).item() == draw


def test_rng_state_left_pending_is_dropped_when_the_fit_ends() -> None:
    """A fit resumed from a finished run trains no batch: its states must not reach the next."""
    callback = RngState()
    torch.manual_seed(1)
    callback.load_state_dict(callback.state_dict())
    callback.on_fit_end(None, None)
    torch.manual_seed(3)
    draw = torch.rand(1).item()
    torch.manual_seed(3)
    callback.on_train_batch_start(None, None, None, 0)
    assert torch.rand(1).item() == draw
