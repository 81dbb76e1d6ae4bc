"""Checkpoints written atomically: a kill during a save never leaves a broken file behind.

Why not Lightning's own ``_atomic_save``: it writes through an fsspec transaction whose temporary
file lives in the system temp folder; on a cluster that is another file system than the run
folder, so the final move is a copy straight into ``last.ckpt``, and a job killed during that copy
(preemption, ``scontrol requeue``, out of time) leaves a truncated checkpoint. Here every save goes
through ``trainer.utils.atomic.atomic_write``: a temporary file in the destination folder, flushed
to disk, swapped in by ``os.replace``; a reader sees the old file or the new one, never half of
one, and a rewritten checkpoint keeps its mode. Every save of the Trainer goes through this
plugin: best and last checkpoints, and Lightning's ``hpc_ckpt_N.ckpt`` on SLURM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import CheckpointIO, TorchCheckpointIO

from trainer.utils.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that writes local files through ``atomic_write``.

    Remote paths (``s3://``...) keep Lightning's behaviour: object stores replace whole objects.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda f: torch.save(checkpoint, f))


def _is_local(path: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(get_filesystem(str(path)), LocalFileSystem)


def with_atomic_io(plugins: list[Any]) -> list[Any]:
    """``plugins`` plus an AtomicCheckpointIO, unless the user already chose a CheckpointIO."""
    if any(isinstance(p, CheckpointIO) for p in plugins):
        return plugins
    return [*plugins, AtomicCheckpointIO()]
