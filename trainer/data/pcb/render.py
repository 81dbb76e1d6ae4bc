"""Drawing a board into an image: palette, solder-mask texture, the scene's shapes (and its
defect), then the nuisances a camera adds: board pose (rotation, translation), blur, uneven
lighting, colour cast and sensor noise; the defect box follows the pose.

The nuisances are what make the task more than template matching; they are drawn here, after
the scene and defect are fixed, so that the same board can be rendered with and without its
defect under identical nuisance. ``render_board`` is the one public entry: an image depends only
on the ``rng`` it is given, so images can be rendered in any order, or in parallel.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from trainer.data.pcb.defects import _sample_defect
from trainer.data.pcb.products import DEFAULT_PRODUCT, PRODUCTS, Product
from trainer.data.pcb.scene import _BASE, _MARGIN, Op, Pt, _bounds, _Component, _decor, _jit, _scene
from trainer.data.pcb.spec import CLASSES

_SS = 2  # supersampling factor: cheap anti-aliasing for the polygon drawing


def _palette(rng: np.random.Generator, product: Product) -> dict:
    mask = np.array([rng.uniform(*channel) for channel in product.mask])
    pad = (205, 165, 75) if rng.random() < product.gold_pads else (178, 178, 172)
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
    rng: np.random.Generator,
    label: str,
    image_size: int,
    with_defect: bool = True,
    product: str = DEFAULT_PRODUCT,
) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """Render a board; `with_defect=False` draws the identical board minus its defect (for tests)."""
    if label not in CLASSES:
        raise ValueError(f"unknown label {label!r}; expected one of {CLASSES}")
    design = PRODUCTS[product]
    pal = _palette(rng, design)
    comps = _scene(rng, design)
    decor = _decor(rng, comps, pal)
    defect = _sample_defect(rng, label, comps)
    theta = math.radians(rng.uniform(-3, 3))
    tx, ty = rng.uniform(-4, 4, 2)
    gain, grad, grad_dir = (
        rng.uniform(*design.gain),
        rng.uniform(0, 0.25),
        rng.uniform(0, 2 * math.pi),
    )
    cast, blur, sigma = rng.uniform(*design.cast, 3), rng.uniform(0, 0.8), rng.uniform(1, 6)

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
    rng: np.random.Generator, label: str, image_size: int, product: str = DEFAULT_PRODUCT
) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """One RGB board of the given class and product, and its defect box (x0, y0, x1, y1; x1/y1
    exclusive)."""
    return _render(rng, label, image_size, product=product)
