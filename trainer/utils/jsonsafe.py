"""JSON that every reader accepts: ``NaN`` and ``Infinity`` are not JSON (jq, browsers and
SQLite's ``json_extract`` refuse them), so non-finite floats are written as ``null``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["strict_json"]


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (nan, inf) replaced by None, in dicts and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
