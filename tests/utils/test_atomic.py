"""The one atomic writer: modes kept, bytes synced, a failed write leaves the old file alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from trainer.utils.atomic import atomic_write


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@pytest.mark.parametrize("original", [0o644, 0o600, 0o640])
def test_rewriting_a_file_keeps_its_mode(tmp_path: Path, original: int) -> None:
    path = tmp_path / "card.md"
    path.write_text("old")
    path.chmod(original)
    atomic_write(path, "new")
    assert path.read_text() == "new" and mode(path) == original


def test_a_new_file_gets_what_a_plain_open_would_give(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.json", b"{}")
        (tmp_path / "plain.json").write_bytes(b"{}")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.json") == mode(tmp_path / "plain.json") == 0o640
    atomic_write(tmp_path / "b.json", "{}")
    assert mode(tmp_path / "b.json") == 0o666 & ~umask()
    atomic_write(tmp_path / "c.json", "{}", mode=0o600)
    assert mode(tmp_path / "c.json") == 0o600


def test_a_writer_function_gets_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "x.ckpt"
    atomic_write(path, lambda f: torch.save({"w": torch.ones(2)}, f))
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))


def test_a_failure_mid_write_leaves_the_original_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"the good one")

    def dies(f) -> None:  # noqa: ANN001
        f.write(b"half of a new one")
        raise OSError("killed mid-write")

    with pytest.raises(OSError, match="mid-write"):
        atomic_write(path, dies)
    assert path.read_bytes() == b"the good one"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_the_bytes_are_synced_before_the_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[int, bool]] = []
    real = os.fsync

    def record(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((info.st_ino, stat.S_ISDIR(info.st_mode)))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    path = tmp_path / "manifest.json"
    atomic_write(path, "{}")
    assert (path.stat().st_ino, False) in synced, "the file itself was not synced"
    assert (tmp_path.stat().st_ino, True) in synced, "the folder (the rename) was not synced"


# ----------------------------------------------------------------------------- its users
def test_the_operating_point_write_keeps_the_checkpoint_mode(tmp_path: Path) -> None:
    from trainer.evaluation.operating_point import write_to_checkpoint

    path = tmp_path / "epoch_003.ckpt"
    torch.save({"state_dict": {}, "trainer_metadata": {"backbone": "b"}}, path)
    path.chmod(0o644)
    write_to_checkpoint(path, {"threshold": 0.5})
    assert mode(path) == 0o644
    meta = torch.load(path, weights_only=True)["trainer_metadata"]
    assert meta == {"backbone": "b", "operating_point": {"threshold": 0.5}}
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_003.ckpt"]


def test_checkpoints_get_the_umask_mode_and_keep_a_changed_one(tmp_path: Path) -> None:
    from trainer.checkpoint.atomic_io import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    old = os.umask(0o027)  # a group-shared cluster folder: not readable by everyone
    try:
        io.save_checkpoint({"epoch": 0}, path)
    finally:
        os.umask(old)
    assert mode(path) == 0o640
    path.chmod(0o600)
    io.save_checkpoint({"epoch": 1}, path)
    assert mode(path) == 0o600 and torch.load(path, weights_only=True)["epoch"] == 1


def test_the_model_card_is_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer.evaluation import model_card

    path = tmp_path / "model_card.md"
    model_card.write(path, model_card.MARKER + "\nfirst\n")
    path.chmod(0o664)
    calls: list[Path] = []
    real = model_card.atomic_write
    monkeypatch.setattr(
        model_card, "atomic_write", lambda p, data: calls.append(Path(p)) or real(p, data)
    )
    model_card.write(path, model_card.MARKER + "\nsecond\n")
    assert calls == [path] and mode(path) == 0o664 and "second" in path.read_text()


def test_a_bundle_folder_is_synced_and_gets_the_umask_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer.export import bundle

    out = tmp_path / "bundle"
    old = os.umask(0o027)
    try:
        tmp = bundle._temp_folder(out)
    finally:
        os.umask(old)
    assert mode(tmp) == 0o750  # not mkdtemp's 0700, not a fixed 0755
    (tmp / "model.onnx").write_bytes(b"onnx")  # as an exporter writes it: not synced
    synced: set[int] = set()
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.add(os.fstat(fd).st_ino) or real(fd))
    bundle._move_into_place(tmp, out)
    assert (out / "model.onnx").stat().st_ino in synced
    assert {out.stat().st_ino, tmp_path.stat().st_ino} <= synced  # the folder and the rename
