"""Procedural circuit-board images with labelled assembly defects.

No dataset can be downloaded, so the default experiment renders one: a green solder-mask board
with traces, pads and components at a jittered fixed layout, plus one defect per non-good image.
Everything derives from ``(seed, split, index)`` so datasets are reproducible byte for byte and
images can be rendered in any order (or in parallel) without changing the result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

GENERATOR_VERSION = "1"
CLASSES: tuple[str, ...] = ("good", "missing_component", "misplaced_component", "solder_bridge")
SPLITS: tuple[str, ...] = ("train", "val", "test")

_BASE = 128.0  # layout units: one unit is one pixel of a 128 px image
_MARGIN = 12.0  # board drawn beyond the frame so nuisance rotation/translation never shows an edge
_SS = 2  # supersampling factor: cheap anti-aliasing for the polygon drawing

Box = tuple[float, float, float, float]
Pt = tuple[float, float]


@dataclass(frozen=True)
class PCBSpec:
    """Everything that determines a generated dataset; its digest names the result."""

    image_size: int = 128
    num_train: int = 2000
    num_val: int = 400
    num_test: int = 400
    good_fraction: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
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
        payload = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- scene model
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


# (kind, centre, base angle, pins) at 128-unit scale; the last slot is only sometimes populated.
_LAYOUT = [
    ("ic", (40, 42), 0, 5),
    ("ic", (90, 90), 90, 4),
    ("passive", (94, 28), 0, 0),
    ("passive", (28, 94), 90, 0),
    ("passive", (60, 104), 0, 0),
    ("passive", (112, 54), 90, 0),
    ("passive", (62, 70), 0, 0),
]


def _scene(rng: np.random.Generator) -> list[_Component]:
    """The board's components: fixed slots with +-2 px jitter and random passive types."""
    comps = []
    for i, (kind, (cx, cy), angle, pins) in enumerate(_LAYOUT):
        if i == len(_LAYOUT) - 1 and rng.random() < 0.5:
            continue
        center = (cx + rng.uniform(-2, 2), cy + rng.uniform(-2, 2))
        if kind == "ic":
            comps.append(_make_ic(rng, center, angle, pins))
        else:
            comps.append(_make_passive(rng, center, angle))
    return comps


# ----------------------------------------------------------------------------- decor and defects
# Drawing ops in board units: ("line", pts, rgb, width) | ("poly", pts, rgb) |
# ("circle", (x, y, r), rgb) | ("rect" | "ellipse", (x0, y0, x1, y1), rgb)
Op = tuple


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


# ----------------------------------------------------------------------------- rendering
def _palette(rng: np.random.Generator) -> dict:
    mask = np.array([rng.uniform(15, 40), rng.uniform(85, 125), rng.uniform(35, 65)])
    pad = (205, 165, 75) if rng.random() < 0.6 else (178, 178, 172)
    copper = np.array([190.0, 140.0, 60.0])
    trace = mask + rng.uniform(0.3, 0.45) * (copper - mask)
    return {
        "mask": mask,
        "trace": tuple(int(v) for v in trace),
        "pad": _jit(rng, pad, 10),
        "silk": _jit(rng, (228, 228, 220), 12),
        "hole": _jit(rng, (20, 24, 20), 6),
    }


def _draw(draw: ImageDraw.ImageDraw, op: Op, scale: float) -> None:
    def px(p: Pt) -> Pt:
        return ((p[0] + _MARGIN) * scale, (p[1] + _MARGIN) * scale)

    kind, data, rgb = op[0], op[1], op[2]
    if kind == "line":
        draw.line(
            [px(p) for p in data], fill=rgb, width=max(1, round(op[3] * scale)), joint="curve"
        )
    elif kind == "poly":
        draw.polygon([px(p) for p in data], fill=rgb)
    elif kind == "circle":
        (x, y), r = px(data[:2]), data[2] * scale
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rgb)
    elif kind == "rect":
        draw.rectangle((*px(data[:2]), *px(data[2:])), fill=rgb)
    elif kind == "ellipse":
        draw.ellipse((*px(data[:2]), *px(data[2:])), fill=rgb)


def _component_ops(comp: _Component) -> list[Op]:
    return [
        (
            p.kind,
            comp.placed(p.data) if p.kind == "poly" else (*comp.placed([p.data[:2]])[0], p.data[2]),
            p.color,
        )
        for p in comp.parts
    ]


def _render(
    rng: np.random.Generator, label: str, image_size: int, with_defect: bool = True
) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """Render a board; `with_defect=False` draws the identical board minus its defect (for tests)."""
    if label not in CLASSES:
        raise ValueError(f"unknown label {label!r}; expected one of {CLASSES}")
    pal = _palette(rng)
    comps = _scene(rng)
    decor = _decor(rng, comps, pal)
    defect = _sample_defect(rng, label, comps)
    theta = math.radians(rng.uniform(-3, 3))
    tx, ty = rng.uniform(-4, 4, 2)
    gain, grad, grad_dir = rng.uniform(0.8, 1.2), rng.uniform(0, 0.25), rng.uniform(0, 2 * math.pi)
    cast, blur, sigma = rng.uniform(0.9, 1.1, 3), rng.uniform(0, 0.8), rng.uniform(1, 6)

    s = image_size / _BASE
    side = math.ceil((_BASE + 2 * _MARGIN) * s)
    big = side * _SS
    # Solder-mask texture: smooth blotches plus grain, made at final scale (upsampling is cheap).
    low = Image.fromarray(rng.standard_normal((8, 8), np.float32), "F")
    low = np.asarray(low.resize((side, side), Image.BICUBIC))[..., None]
    tex = 1 + 0.07 * low + 0.03 * rng.standard_normal((side, side, 1), np.float32)
    mask = np.clip(pal["mask"].astype(np.float32) * tex, 0, 255).astype(np.uint8)
    canvas = Image.fromarray(mask, "RGB").resize((big, big), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for op in decor:
        _draw(draw, op, s * _SS)
    for comp in comps:
        for pad in comp.pads:
            _draw(draw, ("rect", pad, pal["pad"]), s * _SS)
    extra = defect.ops if with_defect else []
    for i, comp in enumerate(comps):
        if with_defect and i == defect.hidden:
            continue
        if with_defect and i == defect.moved:
            comp.offset, comp.turn = defect.offset, defect.turn
            extra = _component_ops(comp) + extra  # displaced part goes on top of its neighbours
            continue
        for op in _component_ops(comp):
            _draw(draw, op, s * _SS)
    for op in extra:
        _draw(draw, op, s * _SS)

    # Nuisance: board rotation about the centre plus translation; PIL wants output->input mapping.
    c, sn = math.cos(theta), math.sin(theta)
    cx = cy = _BASE / 2
    coeffs = (
        c,
        sn,
        -c * s * (cx + tx) - sn * s * (cy + ty) + s * (cx + _MARGIN),
        -sn,
        c,
        sn * s * (cx + tx) - c * s * (cy + ty) + s * (cy + _MARGIN),
    )
    img = canvas.reduce(_SS).transform(
        (image_size, image_size), Image.AFFINE, coeffs, Image.BICUBIC
    )
    if blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / image_size - 0.5
    light = gain * (1 + grad * (xx * math.cos(grad_dir) + yy * math.sin(grad_dir)))
    arr = np.asarray(img, np.float32) * light[..., None] * cast.astype(
        np.float32
    ) + sigma * rng.standard_normal((image_size, image_size, 3), np.float32)
    out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")

    if label == "good":
        return out, None
    assert defect.box is not None
    x0, y0, x1, y1 = defect.box[0] - 1, defect.box[1] - 1, defect.box[2] + 1, defect.box[3] + 1
    corners = [
        (c * (x - cx) - sn * (y - cy) + cx + tx, sn * (x - cx) + c * (y - cy) + cy + ty)
        for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    ]
    bx0, by0, bx1, by1 = _bounds([(x * s, y * s) for x, y in corners])
    clip = lambda v: int(min(max(v, 0), image_size))  # noqa: E731
    return out, (
        clip(math.floor(bx0)),
        clip(math.floor(by0)),
        clip(math.ceil(bx1)),
        clip(math.ceil(by1)),
    )


def render_board(
    rng: np.random.Generator, label: str, image_size: int
) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """One RGB board of the given class and its defect box (x0, y0, x1, y1; x1/y1 exclusive)."""
    return _render(rng, label, image_size)


# ----------------------------------------------------------------------------- dataset on disk
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


def _labels(spec: PCBSpec, split_id: int, n: int) -> list[str]:
    labels = [c for c, k in class_counts(n, spec.good_fraction).items() for _ in range(k)]
    order = np.random.default_rng([spec.seed, 1000 + split_id]).permutation(n)
    return [labels[i] for i in order]


def _render_job(job: tuple[int, int, int, str, int, str]) -> dict:
    seed, split_id, index, label, size, folder = job
    img, box = render_board(np.random.default_rng([seed, split_id, index]), label, size)
    rel = f"{SPLITS[split_id]}/{label}/{SPLITS[split_id]}_{index:05d}.png"
    img.save(Path(folder) / rel, optimize=False)
    return {
        "path": rel,
        "split": SPLITS[split_id],
        "label": label,
        "bbox": list(box) if box else None,
    }


def _is_complete(root: Path, digest: str) -> bool:
    try:
        meta = json.loads((root / "metadata.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("digest") == digest and all(
        (root / m["path"]).is_file() for m in meta["images"]
    )


def generate_dataset(
    root: str | Path, spec: PCBSpec, progress: bool = True, workers: int | None = None
) -> Path:
    """Render the dataset of `spec` into `root` (atomically), or reuse it if already there.

    Layout: root/<split>/<class>/<split>_<index:05d>.png and root/metadata.json.
    Never overwrites or deletes anything it did not create: a non-empty `root` that is not this
    exact dataset raises FileExistsError. `workers` (default: up to 2 CPUs) renders in parallel;
    the output does not depend on it.
    """
    root = Path(root)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    digest = spec.digest()
    if root.exists():
        if _is_complete(root, digest):
            return root
        if not root.is_dir() or any(root.iterdir()):
            raise FileExistsError(
                f"{root} exists and is not the PCB dataset {digest}; pick another folder"
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its 0700 mode would stick to the dataset after the rename.
    tmp = root.parent / f".{root.name}.tmp-{digest}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        jobs = []
        for split_id, split in enumerate(SPLITS):
            n = getattr(spec, f"num_{split}")
            for c in CLASSES:
                (tmp / split / c).mkdir(parents=True)
            for index, label in enumerate(_labels(spec, split_id, n)):
                jobs.append((spec.seed, split_id, index, label, spec.image_size, str(tmp)))
        images = []
        with contextlib.ExitStack() as stack:
            results = map(_render_job, jobs)
            if workers > 1 and len(jobs) >= 256:  # pool start-up only pays off for real sizes
                pool = stack.enter_context(multiprocessing.get_context().Pool(workers))
                results = pool.imap(_render_job, jobs, chunksize=32)  # ordered: deterministic
            if progress:
                from rich.progress import Progress

                bar = stack.enter_context(Progress())
                task = bar.add_task(f"PCB images -> {root}", total=len(jobs))
            for item in results:
                images.append(item)
                if progress:
                    bar.advance(task)
        meta = {
            "generator_version": GENERATOR_VERSION,
            "spec": asdict(spec),
            "digest": digest,
            "classes": list(CLASSES),
            "images": images,
        }
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=1))
        if root.exists():
            root.rmdir()  # empty folder checked above; rmdir fails loudly if that changed
        os.rename(tmp, root)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and _is_complete(root, digest):
            return root  # a concurrent run finished the same dataset first
        raise
    return root
