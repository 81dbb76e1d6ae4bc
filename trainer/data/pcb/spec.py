"""What a generated board set is: its settings (``PCBSpec``), classes, per-class counts and folder.

Kept apart from the drawing so that what only needs to name or size a set (the data module
checking its settings before minutes of rendering, a script printing a table) imports neither
PIL nor the scene. The digest names the set: it covers every setting and ``GENERATOR_VERSION``,
so changing either makes a new folder beside the old one (``generated_folder``), never a silent
overwrite.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

GENERATOR_VERSION = "1"
CLASSES: tuple[str, ...] = ("good", "missing_component", "misplaced_component", "solder_bridge")


@dataclass(frozen=True)
class PCBSpec:
    """Everything that determines a generated dataset; its digest names the result."""

    image_size: int = 128
    num_train: int = 2000
    num_val: int = 400
    num_test: int = 400
    good_fraction: float = 0.4
    seed: int = 0
    product: str = "a"  # a board design of trainer/data/pcb/products.py

    def __post_init__(self) -> None:
        from trainer.data.pcb.products import PRODUCTS

        if self.product not in PRODUCTS:
            raise ValueError(f"product must be one of {', '.join(PRODUCTS)}, got {self.product!r}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        for name in ("num_train", "num_val", "num_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.good_fraction <= 1.0:
            raise ValueError(f"good_fraction must be in [0, 1], got {self.good_fraction}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0 (numpy seeding), got {self.seed}")

    def digest(self) -> str:
        """Short stable hash of the spec and generator version, to detect stale datasets."""
        fields = asdict(self)
        if fields["product"] == "a":  # the sets made before products existed keep their names
            del fields["product"]
        payload = json.dumps({"v": GENERATOR_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]


def generated_folder(root: str | Path, spec: PCBSpec) -> Path:
    """The folder of ``spec``'s set under ``root``: ``root/pcb-<digest>`` (the one place that
    builds the name; ``generate_dataset`` itself writes into whatever folder it is given)."""
    return Path(root) / f"pcb-{spec.digest()}"


def class_counts(n: int, good_fraction: float) -> dict[str, int]:
    """Exact per-class counts: round(n * good_fraction) good, the rest spread evenly."""
    good = round(n * good_fraction)
    per, extra = divmod(n - good, len(CLASSES) - 1)
    return {"good": good, **{c: per + (i < extra) for i, c in enumerate(CLASSES[1:])}}


def smallest_split(good_fraction: float, limit: int = 1_000_000) -> int | None:
    """The fewest images a split needs for every class to get one; None when no size does.

    A class without images is an empty class folder, which training refuses. Every count only
    grows with the split size, so every size from this one on is enough (and bisection finds it).
    """

    def enough(n: int) -> bool:
        return min(class_counts(n, good_fraction).values()) > 0

    low, high = len(CLASSES), limit
    if not enough(high):
        return None
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid + 1, high)
    return low
