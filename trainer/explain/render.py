"""Pictures of what the network sees: labelled feature-map grids and Grad-CAM overlays.

Everything returns a PIL image, so the same picture goes to a PNG file and to TensorBoard
(``as_hwc``). Heatmaps are blended onto the board with pytorch-grad-cam's ``show_cam_on_image``;
feature maps use matplotlib's viridis colormap, each channel scaled to its own range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from trainer.explain.feature_maps import StageMap

BG = (24, 24, 24)
FG = (235, 235, 235)
BOX = (255, 60, 200)


def font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def as_hwc(image: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3) for ``SummaryWriter.add_image(..., dataformats="HWC")``."""
    return np.asarray(image.convert("RGB"))


def to_pil(image: Tensor | np.ndarray) -> Image.Image:
    """A uint8 image (3, H, W) tensor or (H, W, 3) array as a PIL image."""
    arr = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3:
        arr = arr.transpose(1, 2, 0)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def overlay(image: Tensor, heatmap: np.ndarray) -> Image.Image:
    """A heatmap in [0, 1] (H, W) blended over a uint8 image (3, H, W)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = image.detach().cpu().numpy().transpose(1, 2, 0).astype(np.float32) / 255.0
    return Image.fromarray(show_cam_on_image(rgb, heatmap, use_rgb=True, image_weight=0.55))


def with_caption(image: Image.Image, lines: Sequence[str], size: int = 12) -> Image.Image:
    """``image`` under a dark band holding ``lines`` of text."""
    band = (size + 3) * len(lines) + 4
    out = Image.new("RGB", (image.width, image.height + band), BG)
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((3, 2 + i * (size + 3)), line, fill=FG, font=font(size))
    out.paste(image, (0, band))
    return out


def draw_box(image: Image.Image, box: Sequence[float] | None, scale: float = 1.0) -> Image.Image:
    """A copy of ``image`` with ``box`` (x0, y0, x1, y1, x1/y1 exclusive) outlined."""
    if box is None:
        return image
    out = image.copy()
    x0, y0, x1, y1 = (v * scale for v in box)
    ImageDraw.Draw(out).rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX, width=2)
    return out


def feature_rows(
    stages: list[StageMap], index: int = 0, channels: int = 8, tile: int = 48, label_w: int = 150
) -> Image.Image:
    """One row per stage, low to high level: the stage's label, then its most active channels.

    The ``channels`` channels with the highest mean activation on this image are shown (the
    ones that respond to it, rather than the first, often silent, ones), each scaled to [0, 1].
    """
    cmap = colormaps["viridis"]
    gap = 4
    width = label_w + channels * (tile + 2)
    out = Image.new("RGB", (width, len(stages) * (tile + gap) + gap), BG)
    draw = ImageDraw.Draw(out)
    for row, stage in enumerate(stages):
        maps = stage.features[index].numpy()
        order = np.argsort(-maps.reshape(len(maps), -1).mean(axis=1))[:channels]
        y = gap + row * (tile + gap)
        name, rest = stage.label.split(" · ", 1)
        draw.text((4, y + tile // 2 - 14), name, fill=FG, font=font(13))
        draw.text((4, y + tile // 2 + 2), rest, fill=(170, 170, 170), font=font(11))
        for col, ch in enumerate(order):
            m = maps[ch]
            m = (m - m.min()) / (m.max() - m.min() + 1e-8)
            rgb = (cmap(m)[..., :3] * 255).astype(np.uint8)
            cell = Image.fromarray(rgb).resize((tile, tile), Image.NEAREST)
            out.paste(cell, (label_w + col * (tile + 2), y))
    return out


def grid(images: list[Image.Image], ncol: int = 4, pad: int = 4) -> Image.Image:
    """Images side by side in rows of ``ncol`` (each cell as large as the largest image)."""
    if not images:
        raise ValueError("grid of no images")
    w, h = max(i.width for i in images), max(i.height for i in images)
    ncol = min(ncol, len(images))
    nrow = -(-len(images) // ncol)
    out = Image.new("RGB", (ncol * (w + pad) + pad, nrow * (h + pad) + pad), BG)
    for k, image in enumerate(images):
        out.paste(image, (pad + (k % ncol) * (w + pad), pad + (k // ncol) * (h + pad)))
    return out


def explained_tile(
    image: Tensor,
    heatmap: np.ndarray,
    caption: Sequence[str],
    box: Sequence[float] | None = None,
    side: int = 192,
) -> Image.Image:
    """Board and its Grad-CAM side by side, upscaled to ``side``, with a caption (and box)."""
    scale = side / image.shape[-1]
    board = draw_box(to_pil(image).resize((side, side), Image.BICUBIC), box, scale)
    cam = draw_box(overlay(image, heatmap).resize((side, side), Image.BICUBIC), box, scale)
    return with_caption(grid([board, cam], ncol=2, pad=2), caption)


def summary(
    image: Tensor,
    heatmap: np.ndarray,
    stages: list[StageMap],
    index: int,
    caption: Sequence[str],
    box: Sequence[float] | None = None,
    channels: int = 8,
) -> Image.Image:
    """The README picture: a board, its Grad-CAM, and its feature maps from low to high level."""
    top = explained_tile(image, heatmap, caption, box)
    rows = with_caption(feature_rows(stages, index, channels), ["feature maps, low to high level"])
    out = Image.new("RGB", (max(top.width, rows.width), top.height + rows.height + 6), BG)
    out.paste(top, (0, 0))
    out.paste(rows, (0, top.height + 6))
    return out
