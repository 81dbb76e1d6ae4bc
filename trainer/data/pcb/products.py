"""Products: boards of other designs with the same defect classes (``data.generator.product``).

A product is what changes when a line starts making another board: the layout of its component
slots, its component set, the solder mask and pad colours, and the lighting of the station that
films it. Transfer learning is measured on them (``scripts/studies/transfer_benchmark.py``):
train on product ``a``, fine-tune on a few boards of ``b``.

``a`` is the original board: its numbers are those the generator always drew with, so its sets
and their digests are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]
# (kind, centre, base angle, pins) in 128-unit layout coordinates; kind: ic | passive | can.
# The last slot is populated on half the boards.
Slot = tuple[str, tuple[float, float], float, int]


@dataclass(frozen=True)
class Product:
    layout: tuple[Slot, ...]
    mask: tuple[Range, Range, Range]  # solder mask RGB, each channel drawn from its range
    gold_pads: float  # share of boards whose pads are gold (else tin)
    gain: Range  # overall light level
    cast: Range  # per-channel colour cast


PRODUCTS: dict[str, Product] = {
    # green mask, two ICs and four or five passives, the original station's light
    "a": Product(
        layout=(
            ("ic", (40, 42), 0, 5),
            ("ic", (90, 90), 90, 4),
            ("passive", (94, 28), 0, 0),
            ("passive", (28, 94), 90, 0),
            ("passive", (60, 104), 0, 0),
            ("passive", (112, 54), 90, 0),
            ("passive", (62, 70), 0, 0),
        ),
        mask=((15, 40), (85, 125), (35, 65)),
        gold_pads=0.6,
        gain=(0.8, 1.2),
        cast=(0.9, 1.1),
    ),
    # blue mask, mostly tin pads, a six-pin IC, an electrolytic can, a brighter and warmer station
    "b": Product(
        layout=(
            ("ic", (44, 34), 0, 6),
            ("ic", (96, 70), 90, 4),
            ("can", (34, 86), 0, 0),
            ("passive", (68, 106), 0, 0),
            ("passive", (102, 22), 90, 0),
            ("passive", (60, 70), 90, 0),
        ),
        mask=((15, 40), (40, 80), (110, 160)),
        gold_pads=0.2,
        gain=(0.95, 1.35),
        cast=(0.85, 1.15),
    ),
    # dark red mask, gold pads, one wide IC between two cans over a row of passives, a dim station
    "c": Product(
        layout=(
            ("ic", (64, 40), 0, 7),
            ("can", (24, 30), 0, 0),
            ("can", (104, 30), 0, 0),
            ("passive", (28, 74), 90, 0),
            ("passive", (52, 78), 90, 0),
            ("passive", (76, 78), 90, 0),
            ("passive", (100, 74), 90, 0),
            ("passive", (64, 106), 0, 0),
        ),
        mask=((90, 130), (15, 35), (15, 35)),
        gold_pads=1.0,
        gain=(0.55, 0.9),
        cast=(0.9, 1.1),
    ),
}
DEFAULT_PRODUCT = "a"
