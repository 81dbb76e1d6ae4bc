"""Checkpoints written atomically: a kill during a save never leaves a broken file behind.

Why not Lightning's own ``_atomic_save``: it writes through an fsspec transaction whose temporary
file lives in the system temp folder; on a cluster that is another file system than the run
folder, so the final move is a copy straight into ``last.ckpt``, and a job killed during that copy
(preemption, ``scontrol requeue``, out of time) leaves a truncated checkpoint. Here the bytes go to
a temporary file in the destination folder, are flushed to disk, and ``os.replace`` swaps it in:
a reader sees the old file or the new one, never half of one. Every save of the Trainer goes
through this plugin: best and last checkpoints, and Lightning's ``hpc_ckpt_N.ckpt`` on SLURM.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import CheckpointIO, TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that writes local files through a same-folder temp file + ``os.replace``.

    Remote paths (``s3://``...) keep Lightning's behaviour: object stores replace whole objects.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would stick to the checkpoint
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)


def _is_local(path: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(get_filesystem(str(path)), LocalFileSystem)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems cannot sync a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def with_atomic_io(plugins: list[Any]) -> list[Any]:
    """``plugins`` plus an AtomicCheckpointIO, unless the user already chose a CheckpointIO."""
    if any(isinstance(p, CheckpointIO) for p in plugins):
        return plugins
    return [*plugins, AtomicCheckpointIO()]
