"""Background checkpoint writes: a snapshot of the moment of the save, removals and reads that
wait, failures that surface (trainer/checkpoint/atomic_io.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from trainer.checkpoint.atomic_io import AtomicCheckpointIO
from trainer.checkpoint.read import load_checkpoint


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The writer thread blocks before each torch.save until the event is set: a write is
    deterministically still pending while the test acts."""
    release = threading.Event()
    real_save = torch.save

    def save_when_released(obj: object, f: object) -> None:
        assert release.wait(30), "the test never released the writer"
        real_save(obj, f)

    monkeypatch.setattr("trainer.checkpoint.atomic_io.torch.save", save_when_released)
    return release


def test_a_background_save_writes_the_weights_of_the_moment_of_the_save(
    tmp_path: Path, held: threading.Event
) -> None:
    io, path = AtomicCheckpointIO(background=True), tmp_path / "checkpoints" / "last.ckpt"
    weights = torch.ones(4)
    io.save_checkpoint({"state_dict": {"w": weights}, "epoch": 3}, path)
    assert not path.exists(), "the save returned only after writing: not in the background"
    weights.mul_(7)  # the next optimizer step, in place
    held.set()
    io.wait()
    saved = load_checkpoint(path)
    assert saved["epoch"] == 3 and torch.equal(saved["state_dict"]["w"], torch.ones(4))
    io.teardown()


def test_reads_and_removals_wait_for_the_pending_write(
    tmp_path: Path, held: threading.Event
) -> None:
    io = AtomicCheckpointIO(background=True)
    best, other = tmp_path / "epoch_001.ckpt", tmp_path / "epoch_002.ckpt"
    io.save_checkpoint({"state_dict": {}, "epoch": 1}, best)
    threading.Timer(0.3, held.set).start()
    io.remove_checkpoint(best)  # waits for the write, else its rename would bring it back
    assert not best.exists()
    io.save_checkpoint({"state_dict": {}, "epoch": 2}, other)
    assert io.load_checkpoint(other)["epoch"] == 2  # Lightning's read (trainer.test) waits
    io.teardown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_002.ckpt"]


def test_a_failed_background_write_raises_at_the_next_wait(tmp_path: Path) -> None:
    io, path = AtomicCheckpointIO(background=True), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {}, "unpicklable": threading.Lock()}, path)
    with pytest.raises(TypeError, match="pickle"):
        io.teardown()
    assert not path.exists() and not list(tmp_path.glob(".*.tmp")), "half a file left behind"


def test_without_background_the_file_is_there_when_save_returns(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "epoch": 0}, path)
    assert load_checkpoint(path)["epoch"] == 0
