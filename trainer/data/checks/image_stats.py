"""Everything the data checks need from one image file, from a single read of its bytes.

``inspect_file`` reads the file once and derives from those bytes: the content hash (exact
duplicates), the format Pillow detects (content type vs. extension), a full decode (truncated
files), the mode and size, per-channel statistics of the image as the loader sees it (RGB, see
``trainer.data.dataset.load_image``) and, optionally, a perceptual hash (near-duplicates).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# What ``Image.open(...).format`` should say for each extension the loader accepts.
EXPECTED_FORMAT = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}

# What ``load_image`` (``img.convert("RGB")``) does to each mode; None: nothing is lost.
MODE_EFFECT = {
    "RGB": None,
    "L": "grayscale, copied into 3 equal channels (a model trained on colour sees no colour)",
    "LA": "grayscale with alpha: alpha dropped, gray copied into 3 channels",
    "1": "black and white, copied into 3 channels",
    "P": "palette, expanded to RGB; palette transparency is dropped",
    "PA": "palette with alpha, expanded to RGB; alpha dropped",
    "RGBA": "alpha dropped without compositing: transparent pixels show their hidden colour",
    "RGBa": "premultiplied alpha dropped",
    "CMYK": "converted by a naive formula without the ICC profile: colours may shift",
    "YCbCr": "converted to RGB",
    "LAB": "converted to RGB",
    "HSV": "converted to RGB",
    **dict.fromkeys(
        ("I;16", "I;16B", "I;16L", "I;16N", "I"),
        "16/32-bit values above 255 are clipped to 255 (mostly white); convert to 8 bits first",
    ),
    "F": "float values are clipped to 0..255; convert to 8 bits first",
}

# The per-image features the drift test compares (mean and std of each RGB channel).
FEATURES = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b")


@dataclass
class FileInfo:
    """What one file turned out to be. ``error`` is set when it could not be used."""

    path: Path
    nbytes: int
    sha256: str = ""
    format: str | None = None
    mode: str | None = None
    width: int = 0
    height: int = 0
    error: str | None = None
    # per channel (RGB as loaded): pixel sum and sum of squares, for pooled mean and std
    pixels: int = 0
    sums: list[float] = field(default_factory=list)
    sumsq: list[float] = field(default_factory=list)
    features: list[float] = field(default_factory=list)  # see FEATURES
    phash: bytes | None = None  # 256-bit perceptual hash (imagehash.phash)


def _describe_non_image(data: bytes) -> str:
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"not an image Pillow can read (starts with {head[:8]!r})"
    if all(c.isprintable() or c.isspace() for c in text):
        return "not an image: the content is text"
    return f"not an image Pillow can read (starts with {head[:8]!r})"


def rgb_stats(rgb: Image.Image) -> tuple[int, list[float], list[float], list[float]]:
    """Pixel count, per-channel sums and sums of squares, and FEATURES of an RGB image.

    From Pillow's per-channel histogram (C code): several times faster than numpy sums here.
    """
    hist = np.asarray(rgb.histogram(), dtype=np.float64).reshape(3, 256)
    values = np.arange(256, dtype=np.float64)
    n = rgb.width * rgb.height
    sums, sumsq = hist @ values, hist @ (values * values)
    mean = sums / n
    std = np.sqrt(np.maximum(sumsq / n - mean * mean, 0.0))
    return n, sums.tolist(), sumsq.tolist(), [*mean.tolist(), *std.tolist()]


PHASH_SIZE = 16  # 256-bit hashes: 8x8 (64 bits) calls different generated boards 2 bits apart


def phash(img: Image.Image) -> bytes:
    """The DCT perceptual hash of imagehash, 256 bits (robust to resizing and mild changes)."""
    import imagehash

    return np.packbits(imagehash.phash(img, hash_size=PHASH_SIZE).hash.flatten()).tobytes()


def inspect_file(path: Path, stats: bool = True, perceptual: bool = False) -> FileInfo:
    """Read ``path`` once and derive everything the checks need; never raises for bad content.

    Args:
        path: the file.
        stats: compute the RGB statistics (needs the RGB conversion the loader does).
        perceptual: compute the perceptual hash.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        return FileInfo(path, 0, error=f"cannot read the file: {err.strerror or err}")
    info = FileInfo(path, len(data), sha256=hashlib.sha256(data).hexdigest())
    if not data:
        info.error = "zero bytes: the file is empty"
        return info
    try:
        with Image.open(io.BytesIO(data)) as img:
            info.format, info.mode = img.format, img.mode
            info.width, info.height = img.size
            img.load()  # the full decode: truncated or corrupt data fails here
            if stats or perceptual:
                rgb = img if img.mode == "RGB" else img.convert("RGB")
                if stats:
                    info.pixels, info.sums, info.sumsq, info.features = rgb_stats(rgb)
                if perceptual:
                    info.phash = phash(rgb)
    except UnidentifiedImageError:
        info.error = _describe_non_image(data)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        kind = f"{info.format} " if info.format else ""
        info.error = f"cannot decode the {kind}data: {str(err).splitlines()[0][:160]}"
    return info


def array_mode(array: np.ndarray) -> str:
    """The Pillow mode an array would have: (h, w) L or I;16, (h, w, 3) RGB, (h, w, 4) RGBA."""
    if array.ndim == 2:
        return "I;16" if array.dtype == np.uint16 else "L"
    if array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8:
        return "RGB" if array.shape[2] == 3 else "RGBA"
    return f"array{tuple(array.shape)}:{array.dtype}"


def image_to_rgb(image: Image.Image | np.ndarray) -> tuple[str, tuple[int, int], Image.Image]:
    """Mode, (width, height) and the RGB image the loader would make of ``image``.

    Raises:
        ValueError: an array that is no image (not (h, w), (h, w, 3) or (h, w, 4) uint8).
    """
    if isinstance(image, Image.Image):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return image.mode, image.size, rgb
    array = np.asarray(image)
    mode = array_mode(array)
    if mode.startswith("array"):
        raise ValueError(f"cannot read an image from an array of shape {array.shape}")
    size = (int(array.shape[1]), int(array.shape[0]))
    return mode, size, Image.fromarray(array).convert("RGB")
