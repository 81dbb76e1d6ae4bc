"""A per-epoch diagnostic that takes at most a stated share of the training time.

Why: on a small dataset an epoch lasts a second, and a diagnostic that costs a fifth of a second
(Grad-CAM of the worst mistakes, a histogram of every weight) would make the run a fifth slower for
pictures nobody needs every epoch. On real data an epoch lasts minutes and the same diagnostic runs
every epoch. The rule: skip an epoch while the diagnostic's spent seconds exceed ``max_share`` of
the fit's seconds so far; the first epoch always runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from trainer.errors import ConfigError


class TimeBudget:
    """Tracks one diagnostic's spent seconds against the fit's elapsed seconds.

    Args:
        name: the option that sets ``max_share`` (for the error message).
        max_share: the largest share of the fit's wall time the diagnostic may take; null: every
            epoch, whatever it costs.
    """

    def __init__(self, name: str, max_share: float | None) -> None:
        if max_share is not None and not 0 < max_share <= 1:
            raise ConfigError(
                f"{name}={max_share}: give a share of the training time in (0, 1], or null to "
                "run every epoch"
            )
        self.max_share = max_share
        self.spent = 0.0
        self.fit_start: float | None = None

    def start_fit(self) -> None:
        self.fit_start, self.spent = time.perf_counter(), 0.0

    def allows(self) -> bool:
        """Whether this epoch's diagnostic fits in the budget."""
        if self.max_share is None or self.fit_start is None:
            return True
        return self.spent <= self.max_share * (time.perf_counter() - self.fit_start)

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        """Count the seconds spent inside against the budget."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent += time.perf_counter() - started
