"""A callback that slows each training batch down, so a test can kill a run mid-epoch.

Not a test module: subprocess runs load it with `+callbacks.slow._target_=tests._slow_batches.Slow`.
"""

import time

import lightning as L


class Slow(L.Callback):
    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: object) -> None:
        time.sleep(self.seconds)
