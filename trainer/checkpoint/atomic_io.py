"""Checkpoints written atomically: a kill during a save never leaves a broken file behind.

Why not Lightning's own ``_atomic_save``: it writes through an fsspec transaction whose temporary
file lives in the system temp folder; on a cluster that is another file system than the run
folder, so the final move is a copy straight into ``last.ckpt``, and a job killed during that copy
(preemption, ``scontrol requeue``, out of time) leaves a truncated checkpoint. Here every save goes
through ``trainer.utils.atomic.atomic_write``: a temporary file in the destination folder, flushed
to disk, swapped in by ``os.replace``; a reader sees the old file or the new one, never half of
one, and a rewritten checkpoint keeps its mode. Every save of the Trainer goes through this
plugin: best and last checkpoints, and Lightning's ``hpc_ckpt_N.ckpt`` on SLURM.

In training (``with_atomic_io``) a single-process run writes in the background: the checkpoint's
tensors are copied to host memory on the training thread (a snapshot of that moment; a file
written from a GPU run then holds CPU tensors, which every loader here maps anyway), and one
writer thread serialises and fsyncs it while the next epoch trains. Why not Lightning's
``AsyncCheckpointIO``: it cannot wait for one file (removing the previous best would wait for
every write) and it has no wait short of its teardown, which callbacks reading the best
checkpoint in ``on_train_end`` need (``wait_for_checkpoints``). Reads, removals and the
Trainer's teardown wait for pending writes; a failed write raises at the next save or wait. Under DDP every save is synchronous: other ranks
read the best checkpoint right after rank 0 writes it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import CheckpointIO, TorchCheckpointIO
from lightning_utilities.core.apply_func import apply_to_collection

from trainer.utils.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that writes local files through ``atomic_write``.

    Remote paths (``s3://``...) keep Lightning's behaviour: object stores replace whole objects.

    Args:
        background: write local files on a writer thread (single-process runs only).
    """

    def __init__(self, background: bool = False) -> None:
        super().__init__()
        self.background = background
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[tuple[Path, Future]] = []  # in the writer's order

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            self.wait()
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self.background or _distributed():
            self.wait()
            atomic_write(target, lambda f: torch.save(checkpoint, f))
            return
        self._raise_failed()
        # The tensors as they are now, copied to host memory (no second copy on a GPU; torch.save
        # would bring them there anyway): training goes on changing them in place. The rest of
        # the dict is rebuilt by apply_to_collection, its leaves (config, numbers) not mutated.
        snapshot = apply_to_collection(checkpoint, torch.Tensor, _host_copy)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-writer")
        write = self._executor.submit(atomic_write, target, lambda f: torch.save(snapshot, f))
        self._pending.append((target, write))

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.wait()
        return super().load_checkpoint(path, *args, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        for target, write in self._pending:
            if target == Path(path):
                write.result()  # else its rename would bring the file back after the removal
        super().remove_checkpoint(path)

    def wait(self) -> None:
        """Block until every pending write is on disk; raise the first failure."""
        pending, self._pending = self._pending, []
        for _, write in pending:
            write.result()

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def _raise_failed(self) -> None:
        finished = [(t, w) for t, w in self._pending if w.done()]  # once: no race with the writer
        self._pending = [entry for entry in self._pending if entry not in finished]
        for _, write in finished:
            write.result()


def _host_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True)


def wait_for_checkpoints(trainer: Any) -> None:
    """Let pending background writes land before this process reads a checkpoint file."""
    io = getattr(trainer.strategy, "checkpoint_io", None)
    if isinstance(io, AtomicCheckpointIO):
        io.wait()


def _distributed() -> bool:
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def _is_local(path: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(get_filesystem(str(path)), LocalFileSystem)


def with_atomic_io(plugins: list[Any]) -> list[Any]:
    """``plugins`` plus an AtomicCheckpointIO writing in the background, unless the user already
    chose a CheckpointIO."""
    if any(isinstance(p, CheckpointIO) for p in plugins):
        return plugins
    return [*plugins, AtomicCheckpointIO(background=True)]
