"""The board before it is drawn: components at a jittered fixed layout, and the traces, vias,
silkscreen and holes around them, all as shapes in layout units.

A scene is plain data (parts, pads, drawing ops), so that ``defects`` can pick a component and
move or hide it, and ``render`` can draw the same scene with or without that defect. Every
random choice comes from the ``rng`` it is given, in a fixed order: the same generator state
gives the same board.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trainer.data.pcb.products import Product

_BASE = 128.0  # layout units: one unit is one pixel of a 128 px image
_MARGIN = 12.0  # board drawn beyond the frame so nuisance rotation/translation never shows an edge

Box = tuple[float, float, float, float]
Pt = tuple[float, float]
# Drawing ops in board units: ("line", pts, rgb, width) | ("poly", pts, rgb) |
# ("circle", (x, y, r), rgb) | ("rect" | "ellipse", (x0, y0, x1, y1), rgb)
Op = tuple


@dataclass
class _Part:
    """Everything that moves with a component: polygons or circles in component-local units."""

    kind: str  # "poly" | "circle"
    data: tuple  # polygon points, or (cx, cy, r)
    color: tuple[int, int, int]


@dataclass
class _Component:
    center: Pt
    angle: float  # degrees, base orientation (0 or 90)
    extent: float  # long side, used to size misplacements
    parts: list[_Part]
    pads: list[Box]  # absolute, axis-aligned
    pin_rows: list[list[Box]] = field(default_factory=list)  # adjacent pins, for bridges
    offset: Pt = (0.0, 0.0)
    turn: float = 0.0  # extra rotation of a misplaced component

    def placed(self, pts: tuple | list) -> list[Pt]:
        """Local points -> board units, including any misplacement."""
        center = (self.center[0] + self.offset[0], self.center[1] + self.offset[1])
        return _rotated(pts, center, self.angle + self.turn)


def _rotated(pts: tuple | list, center: Pt, degrees: float) -> list[Pt]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return [(center[0] + x * c - y * s, center[1] + x * s + y * c) for x, y in pts]


def _rect(w: float, h: float, cx: float = 0.0, cy: float = 0.0) -> list[Pt]:
    return [
        (cx - w / 2, cy - h / 2),
        (cx + w / 2, cy - h / 2),
        (cx + w / 2, cy + h / 2),
        (cx - w / 2, cy + h / 2),
    ]


def _bounds(pts: list[Pt]) -> Box:
    xs, ys = zip(*pts, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _jit(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    r, g, b = (
        min(255, max(0, v + int(d)))
        for v, d in zip(rgb, rng.integers(-amount, amount + 1, 3), strict=True)
    )
    return r, g, b


def _make_ic(rng: np.random.Generator, center: Pt, angle: float, pins: int) -> _Component:
    pitch, body_h = 5.0, float(rng.uniform(13, 17))
    body_w = pins * pitch + 3
    body_rgb = _jit(rng, (38, 38, 42), 10)
    lead_rgb = _jit(rng, (175, 175, 180), 12)
    parts = [_Part("poly", tuple(_rect(body_w, body_h)), body_rgb)]
    parts.append(
        _Part("circle", (-body_w / 2 + 3.5, body_h / 2 - 3.5, 1.4), _jit(rng, (120, 120, 125), 15))
    )
    rows: list[list[Box]] = []
    for side in (-1, 1):
        row = []
        for i in range(pins):
            x = (i - (pins - 1) / 2) * pitch
            parts.append(
                _Part("poly", tuple(_rect(2.0, 3.5, x, side * (body_h / 2 + 1.5))), lead_rgb)
            )
            row.append(_bounds(_rotated(_rect(3, 6, x, side * (body_h / 2 + 2.5)), center, angle)))
        rows.append(row)
    pads = [p for row in rows for p in row]
    return _Component(center, angle, body_w, parts, pads, rows)


def _make_passive(rng: np.random.Generator, center: Pt, angle: float) -> _Component:
    is_cap = rng.random() < 0.5
    length, width = (13.0, 8.0) if is_cap else (14.0, 7.0)
    body = _jit(rng, (170, 125, 75), 15) if is_cap else _jit(rng, (32, 32, 34), 8)
    cap_rgb = _jit(rng, (190, 190, 192), 12)
    parts = [_Part("poly", tuple(_rect(length, width)), body)]
    parts += [
        _Part("poly", tuple(_rect(3.0, width, s * (length / 2 - 1.5))), cap_rgb) for s in (-1, 1)
    ]
    if not is_cap:  # resistor value marking
        parts.append(_Part("poly", tuple(_rect(5.0, 1.2)), _jit(rng, (150, 150, 150), 20)))
    pads = [
        _bounds(_rotated(_rect(5, width + 2, s * (length / 2 - 0.5)), center, angle))
        for s in (-1, 1)
    ]
    return _Component(center, angle, length + 3, parts, pads)


def _make_can(rng: np.random.Generator, center: Pt, angle: float) -> _Component:
    """An electrolytic capacitor: a square plastic base under a round aluminium can with its
    polarity stripe; two pads under the base's edges."""
    side = float(rng.uniform(15, 18))
    base = _jit(rng, (40, 40, 44), 8)
    can = _jit(rng, (185, 188, 195), 12)
    stripe = _jit(rng, (30, 40, 110), 12)
    parts = [
        _Part("poly", tuple(_rect(side, side)), base),
        _Part("circle", (0.0, 0.0, side * 0.42), can),
        _Part("poly", tuple(_rect(side * 0.16, side * 0.6, -side * 0.24)), stripe),
    ]
    pads = [
        _bounds(_rotated(_rect(5, side + 2, s * (side / 2 - 1)), center, angle)) for s in (-1, 1)
    ]
    return _Component(center, angle, side + 3, parts, pads)


def _scene(rng: np.random.Generator, product: Product) -> list[_Component]:
    """The board's components: the product's slots with +-2 px jitter, random passive types."""
    comps = []
    layout = product.layout
    for i, (kind, (cx, cy), angle, pins) in enumerate(layout):
        if i == len(layout) - 1 and rng.random() < 0.5:
            continue
        center = (cx + rng.uniform(-2, 2), cy + rng.uniform(-2, 2))
        if kind == "ic":
            comps.append(_make_ic(rng, center, angle, pins))
        elif kind == "can":
            comps.append(_make_can(rng, center, angle))
        else:
            comps.append(_make_passive(rng, center, angle))
    return comps


def _outward(comp: _Component, pad: Box) -> Pt:
    """Unit vector pointing from the component out through this pad (where its trace leaves)."""
    px, py = (pad[0] + pad[2]) / 2 - comp.center[0], (pad[1] + pad[3]) / 2 - comp.center[1]
    vertical = (pad[3] - pad[1] > pad[2] - pad[0]) if comp.pin_rows else abs(py) > abs(px)
    return (0.0, math.copysign(1.0, py)) if vertical else (math.copysign(1.0, px), 0.0)


def _decor(rng: np.random.Generator, comps: list[_Component], pal: dict) -> list[Op]:
    """Traces, vias, silkscreen and mounting holes: the board around the components."""
    ops: list[Op] = []
    lo, hi = -_MARGIN, _BASE + _MARGIN
    for _ in range(int(rng.integers(3, 6))):  # long background traces with a 45 degree jog
        a, b, d = rng.uniform(5, 123), rng.uniform(20, 108), rng.uniform(-12, 12)
        pts = [(lo, a), (b, a), (b + abs(d), a + d), (hi, a + d)]
        if rng.random() < 0.5:
            pts = [(y, x) for x, y in pts]
        ops.append(("line", pts, pal["trace"], float(rng.uniform(1.2, 2.0))))
    for comp in comps:
        for pad in comp.pads:
            length, jog = rng.uniform(3, 12), rng.uniform(-6, 6)
            if rng.random() < 0.3:
                continue
            (dx, dy), cx, cy = _outward(comp, pad), (pad[0] + pad[2]) / 2, (pad[1] + pad[3]) / 2
            x0, y0 = cx + dx * (pad[2] - pad[0]) / 2, cy + dy * (pad[3] - pad[1]) / 2
            x1, y1 = x0 + dx * length, y0 + dy * length
            x2, y2 = x1 + dx * abs(jog) + dy * jog, y1 + dy * abs(jog) + dx * jog
            ops.append(("line", [(cx, cy), (x1, y1), (x2, y2)], pal["trace"], 1.4))
            ops += [("circle", (x2, y2, 1.8), pal["pad"]), ("circle", (x2, y2, 0.8), pal["hole"])]
    for _ in range(int(rng.integers(2, 7))):
        x, y = rng.uniform(4, 124, 2)
        ops += [("circle", (x, y, 1.8), pal["pad"]), ("circle", (x, y, 0.8), pal["hole"])]
    if rng.random() < 0.8:
        for comp in comps:
            x0, y0, x1, y1 = _union(
                comp.pads + [_bounds(comp.placed(p.data)) for p in comp.parts[:1]]
            )
            box = _rect(x1 - x0 + 3, y1 - y0 + 3, (x0 + x1) / 2, (y0 + y1) / 2)
            ops.append(("line", box + box[:1], pal["silk"], 0.7))
    for x, y in ((6.0, 6.0), (122.0, 122.0)):
        ops += [("circle", (x, y, 4.0), pal["pad"]), ("circle", (x, y, 2.6), pal["hole"])]
    return ops
