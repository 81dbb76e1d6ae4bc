"""The one clock of the project: UTC timestamps, as every record (checkpoints, history, bundles)
writes them."""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["now_utc", "stamp_utc"]


def now_utc() -> str:
    """ISO 8601 to the second, e.g. ``2026-12-02T01:05:19+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stamp_utc() -> str:
    """A compact stamp for names, e.g. ``20261202-010519``."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
