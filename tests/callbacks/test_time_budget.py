"""A per-epoch diagnostic's time budget: runs while its spent share is under the limit."""

from __future__ import annotations

import pytest

from trainer.callbacks import time_budget
from trainer.callbacks.time_budget import TimeBudget
from trainer.errors import ConfigError


class Clock:
    """A hand-driven perf_counter."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_costly_diagnostic_skips_epochs_until_the_fit_catches_up(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(time_budget.time, "perf_counter", clock)
    budget = TimeBudget("x.max_share", 0.1)
    budget.start_fit()
    ran = []
    for epoch in range(20):
        clock.now += 1.0  # an epoch of training: one second
        if budget.allows():
            with budget.measure():
                clock.now += 0.5  # the diagnostic: half a second
            ran.append(epoch)
    # Counted by hand: it runs when spent <= 0.1 x elapsed; after its k-th run spent = 0.5 k,
    # so run k+1 waits for elapsed >= 5 k: runs at t=1 (epoch 0), then t=5.5 (epoch 4), t=10
    # (epoch 8), t=15.5 (epoch 13), t=20 (epoch 17).
    assert ran == [0, 4, 8, 13, 17]
    assert budget.spent <= 0.1 * clock.now + 0.5


def test_null_runs_every_epoch_and_outside_a_fit_it_always_runs(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(time_budget.time, "perf_counter", clock)
    assert TimeBudget("x.max_share", 0.01).allows()  # no fit started: trainer.validate()
    budget = TimeBudget("x.max_share", None)
    budget.start_fit()
    for _ in range(3):
        clock.now += 1.0
        assert budget.allows()
        with budget.measure():
            clock.now += 10.0


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_share_outside_0_1_is_one_line_naming_the_option(share: float) -> None:
    with pytest.raises(ConfigError, match=f"callbacks.worst_mistakes.max_share={share}"):
        TimeBudget("callbacks.worst_mistakes.max_share", share)
