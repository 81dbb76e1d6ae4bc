"""Callbacks that let a test kill a run mid-epoch: slow batches down, or SIGKILL at a given batch.

Not a test module: subprocess runs load them with
`+callbacks.slow._target_=tests.helpers.slow_batches.Slow` or `+callbacks.kill._target_=...KillAt`.
"""

import os
import signal
import time
from pathlib import Path

import lightning as L

from trainer.checkpoint.atomic_io import wait_for_checkpoints


class Slow(L.Callback):
    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: object) -> None:
        time.sleep(self.seconds)


class KillAt(L.Callback):
    """SIGKILL this process when training batch ``b`` of epoch ``e`` starts, for each [e, b].

    Each point kills once (a marker file in ``marker_dir`` remembers it), so the same command
    started again runs past it, as a requeued job would. A kill at batch 0 lands right after the
    previous epoch's checkpoint is on disk (its background write waited for: a kill during that
    write resumes from the epoch before); a kill at batch 1 or later, after optimizer steps of
    this epoch.
    """

    def __init__(self, marker_dir: str, points: list[list[int]]) -> None:
        self.marker_dir = Path(marker_dir)
        self.points = [(int(epoch), int(batch)) for epoch, batch in points]

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        point = (trainer.current_epoch, batch_idx)
        marker = self.marker_dir / f"killed_at_epoch{point[0]}_batch{point[1]}"
        if point in self.points and not marker.exists():
            self.marker_dir.mkdir(parents=True, exist_ok=True)
            marker.touch()
            wait_for_checkpoints(trainer)
            os.kill(os.getpid(), signal.SIGKILL)
