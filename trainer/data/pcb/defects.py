"""The three assembly defects: a component missing, a component misplaced (shifted and/or
turned), adjacent IC pins joined by a solder bridge; and the box each one occupies.

Sampled apart from the drawing so that the same board can be drawn without its defect (the
tests compare the two to check the defect is visible inside its box and nowhere else). A defect
never changes the scene it was sampled from: it says what ``render`` hides, moves or adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trainer.data.pcb.scene import Box, Op, Pt, _bounds, _Component, _outward, _rect, _union
from trainer.data.pcb.spec import CLASSES


@dataclass
class _Defect:
    box: Box | None = None  # board units, before the nuisance transform
    hidden: int = -1  # component left off the board (missing)
    moved: int = -1  # component drawn displaced (misplaced)
    offset: Pt = (0.0, 0.0)
    turn: float = 0.0
    ops: list[Op] = field(default_factory=list)  # drawn on top (glue mark, solder bridge)


def _sample_defect(rng: np.random.Generator, label: str, comps: list[_Component]) -> _Defect:
    """Pick the defect for `label`; only sampled here so the same board can be drawn without it."""
    if label == "good":
        return _Defect()
    if label == "missing_component":
        i = int(rng.integers(len(comps)))
        comp, d = comps[i], _Defect(hidden=i)
        if rng.random() < 0.5:  # faint glue dot left where the part sat
            glue = _rect(comp.extent * 0.25, comp.extent * 0.2)
            d.ops.append(("poly", comp.placed(glue), (150, 110, 80)))
        d.box = _union(comp.pads)
        return d
    if label == "misplaced_component":
        i = int(rng.integers(len(comps)))
        comp, mode = comps[i], rng.random()
        shift = comp.extent * rng.uniform(0.45, 0.75) if mode < 0.8 else 0.0
        turn = rng.uniform(15, 45) if mode >= 0.4 else 0.0
        turn = max(turn, 25.0) if mode >= 0.8 else turn  # rotation alone must expose pads clearly
        a = rng.uniform(0, 2 * math.pi)
        if not (12 < comp.center[0] + shift * math.cos(a) < 116):
            a = math.pi - a  # mirror the direction rather than clamp the shift away
        if not (12 < comp.center[1] + shift * math.sin(a) < 116):
            a = -a
        ox, oy = shift * math.cos(a), shift * math.sin(a)
        d = _Defect(moved=i, offset=(ox, oy), turn=float(turn * rng.choice([-1, 1])))
        comp.offset, comp.turn = d.offset, d.turn
        body = [_bounds(comp.placed(p.data)) for p in comp.parts if p.kind == "poly"]
        comp.offset, comp.turn = (0.0, 0.0), 0.0
        d.box = _union(comp.pads + body)
        return d
    if label == "solder_bridge":  # adjacent IC pins joined by a bright blob at their outer end
        ics = [c for c in comps if c.pin_rows]
        comp = ics[int(rng.integers(len(ics)))]
        row = comp.pin_rows[int(rng.integers(len(comp.pin_rows)))]
        span = 3 if rng.random() < 0.25 else 2
        start = int(rng.integers(len(row) - span + 1))
        x0, y0, x1, y1 = _union(row[start : start + span])
        (dx, dy), th, bulge = _outward(comp, row[start]), rng.uniform(4, 5.5), rng.uniform(-0.5, 1)
        sign = dx or dy  # +-1 along the pin axis, pointing away from the body
        outer = (x1 if sign > 0 else x0) if dx else (y1 if sign > 0 else y0)
        a, b = sorted((outer + sign * bulge, outer + sign * (bulge - th)))  # outer end of the pins
        blob = (a, y0 - 0.8, b, y1 + 0.8) if dx else (x0 - 0.8, a, x1 + 0.8, b)
        shine = int(rng.integers(222, 246))
        cx, cy = (blob[0] + blob[2]) / 2, (blob[1] + blob[3]) / 2
        d = _Defect(box=blob)
        d.ops += [("ellipse", blob, (shine, shine, shine + 6))]
        d.ops += [("circle", (cx - 0.8, cy - 0.6, 1.0), (255, 255, 255))]
        return d
    raise ValueError(f"unknown label {label!r}; expected one of {CLASSES}")
