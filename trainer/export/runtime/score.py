"""Score images with an exported bundle: ``init()`` once, then ``run(request)`` per request.

This file is copied into every bundle as ``score.py``. It needs only onnxruntime, numpy and
Pillow (the bundle's ``requirements.txt``): no torch, no import of the ``trainer`` package, so
it runs in a small container. Usage, from the bundle folder::

    import score
    score.init()                      # reads schema.json and model.onnx next to this file
    score.run({"images": [{"name": "board.png", "data": "<base64 of the file>"}]})

``run`` returns ``{"predictions": [...], ...}`` as ``schema.json`` describes; input the model
cannot take raises ``InputError`` (``code``, HTTP ``status``, one-line message naming the image).
A classifier's prediction is ``{"name", "label", "probabilities", "defect_score", "pass"}``; an
anomaly model's (``x-model.kind``) is ``{"name", "anomaly_score", "pass", "threshold"}``, and with
``run(request, map=True)`` (or ``"map": true`` in the request) also ``"map"``: the anomaly map as
a grayscale PNG and the box around its peak (``anomaly_map``).

From the shell, as ``python predict.py`` does with the checkpoint (the same CSV columns)::

    python score.py boards/ 'more/**/*.png' > predictions.csv    # exit 0, 1: none read, 2: usage

Preprocessing reproduces the training pipeline's evaluation transform exactly: decode with
Pillow, convert to RGB, then a square antialiased resize that is a numpy port of the uint8
kernel torchvision runs in training (``TF.resize(uint8, antialias=True)``, Pillow's algorithm
with 16-bit fixed-point weights). Pillow's own ``Image.resize`` uses 22-bit weights and differs
by one grey level on a few pixels in a thousand, hence the port. Normalisation is inside the
ONNX graph, which takes the resized uint8 images.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import functools
import glob
import hashlib
import io
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageFile, UnidentifiedImageError

HERE = Path(__file__).resolve().parent
ANOMALY = "anomaly"  # x-model.kind of an anomaly model (good images only); else a classifier
MAP_LEVEL = 0.5  # the box: map pixels at least this far from the map's minimum to its maximum
# What the training loader reads (trainer.data.image_folder.IMAGE_EXTENSIONS)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class InputError(ValueError):
    """A request the model cannot score: bad bytes, a limit exceeded, a mode not accepted.

    Args:
        code: machine-readable reason (``not_an_image``, ``file_too_large``, ...).
        message: one line naming the image and what is wrong.
        status: the HTTP status a server answers with (4xx).
        image: the image's name or index, when one image is at fault.
    """

    def __init__(self, code: str, message: str, status: int = 422, image: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.image = image

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "image": self.image}}


# ---------------------------------------------------------------- resize (torchvision's uint8)


def _filter(interpolation: str) -> tuple[float, Any]:
    """Half-width and kernel of the antialias filter (torch's ``aa_filter``; cubic a = -0.5)."""
    if interpolation == "bilinear":
        return 1.0, lambda x: np.clip(1.0 - np.abs(x), 0.0, None)
    if interpolation == "bicubic":
        a = -0.5

        def cubic(x: np.ndarray) -> np.ndarray:
            x = np.abs(x)
            near = ((a + 2) * x - (a + 3)) * x * x + 1
            far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
            return np.where(x < 1, near, np.where(x < 2, far, 0.0))

        return 2.0, cubic
    raise ValueError(f"interpolation '{interpolation}' is not supported")


@functools.lru_cache(maxsize=64)
def _weights(n_in: int, n_out: int, interpolation: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Per output pixel: input indices, integer weights, and their fixed-point precision.

    Mirrors ``_compute_index_ranges_int16_weights`` in ATen's UpSampleKernel.cpp: float weights
    normalised per output pixel, then scaled by the largest power of two that keeps the largest
    weight within int16, rounded half away from zero. Unused taps get index 0 and weight 0.
    """
    half, kernel = _filter(interpolation)
    scale = n_in / n_out
    support = half * scale if scale >= 1.0 else half
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    taps = int(np.ceil(support)) * 2 + 1
    index = np.zeros((n_out, taps), dtype=np.int64)
    weight = np.zeros((n_out, taps), dtype=np.float64)
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = kernel((np.arange(lo, hi) - center + 0.5) * invscale)
        total = w.sum()
        index[i, : hi - lo] = np.arange(lo, hi)
        weight[i, : hi - lo] = w / total if total != 0.0 else w
    precision = 0
    while precision < 22 and int(0.5 + weight.max() * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = weight * (1 << precision)
    return (
        index,
        np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5)).astype(np.int32),
        precision,
    )


def _resize_axis(image: np.ndarray, n_out: int, axis: int, interpolation: str) -> np.ndarray:
    """One separable pass in exact integer arithmetic: sum, round, shift, clip to uint8.

    A loop over the few filter taps (gathers and multiply-adds) rather than a matrix product:
    small matrices are slow in a multi-threaded BLAS on a busy machine, and integers stay exact.
    """
    n_in = image.shape[axis]
    if n_in == n_out:
        return image
    index, weight, precision = _weights(n_in, n_out, interpolation)
    moved = np.moveaxis(image, axis, 0)
    shape = (n_out,) + (1,) * (moved.ndim - 1)
    acc = np.full((n_out, *moved.shape[1:]), 1 << (precision - 1), dtype=np.int32)
    for k in range(index.shape[1]):
        acc += weight[:, k].reshape(shape) * moved[index[:, k]]
    return np.moveaxis(np.clip(acc >> precision, 0, 255).astype(np.uint8), 0, axis)


def resize_uint8(image: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """``image`` (H, W, C) uint8 resized to ``size`` (h, w), bit-identical to torchvision.

    Matches ``TF.resize(tensor, size, interpolation, antialias=True)`` on uint8 CPU tensors
    (bilinear and bicubic: width first, then height, uint8 in between, as ATen does).
    """
    h, w = size
    if interpolation == "nearest":  # torch's legacy nearest: floor(i * in / out), in float32
        rows = np.minimum(
            np.floor(np.arange(h, dtype=np.float32) * np.float32(image.shape[0] / h)),
            image.shape[0] - 1,
        ).astype(np.int64)
        cols = np.minimum(
            np.floor(np.arange(w, dtype=np.float32) * np.float32(image.shape[1] / w)),
            image.shape[1] - 1,
        ).astype(np.int64)
        return image[rows][:, cols]
    return _resize_axis(_resize_axis(image, w, 1, interpolation), h, 0, interpolation)


# ---------------------------------------------------------------- decoding under limits


def protect_pillow(max_pixels: int) -> None:
    """Process-wide Pillow guards for a serving process: refuse bombs, never load truncated data."""
    Image.MAX_IMAGE_PIXELS = int(max_pixels)
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    ImageFile.LOAD_TRUNCATED_IMAGES = False


class Model:
    """The bundle's model and rules: limits, preprocessing, ONNX session, operating point.

    Args:
        bundle_dir: folder with ``schema.json`` and ``model.onnx``.
        threads: ONNX Runtime intra-op threads (default: ``SCORE_THREADS`` or 1).
        verify: check ``model.onnx`` against ``manifest.json``'s sha256 when there is one.
    """

    def __init__(
        self, bundle_dir: str | Path = HERE, threads: int | None = None, verify: bool = True
    ):
        self.dir = Path(bundle_dir)
        self.schema = json.loads((self.dir / "schema.json").read_text())
        self.info = self.schema["x-model"]
        self.limits = self.schema["x-limits"]
        self.class_names = list(self.info["class_names"])
        pre = self.info["preprocessing"]
        self.size = (int(pre["resize"][0]), int(pre["resize"][1]))
        self.interpolation = str(pre["interpolation"])
        self.operating_point = self.info["operating_point"]
        self.kind = self.info.get("kind", "classifier")
        model_path = self.dir / "model.onnx"
        if verify:
            self._verify(model_path)
        self.session = ort.InferenceSession(
            str(model_path), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def _verify(self, model_path: Path) -> None:
        manifest = self.dir / "manifest.json"
        if not manifest.is_file():
            return
        expected = json.loads(manifest.read_text())["files"]["model.onnx"]["sha256"]
        if hashlib.sha256(model_path.read_bytes()).hexdigest() != expected:
            raise RuntimeError(f"{model_path}: sha256 differs from manifest.json; re-export")

    # -- input checks and preprocessing

    def decode(self, data: bytes, name: str) -> Image.Image:
        """Open ``data`` as an accepted image, checking every limit before the pixels decode."""
        lim = self.limits
        if not data:
            raise InputError("empty_file", f"image '{name}' is empty (0 bytes)", 400, name)
        if len(data) > lim["max_bytes"]:
            raise InputError(
                "file_too_large",
                f"image '{name}' has {len(data)} bytes, more than the limit of {lim['max_bytes']}",
                413,
                name,
            )
        formats = lim["formats"]
        try:
            img = Image.open(io.BytesIO(data), formats=formats)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise InputError("too_many_pixels", f"image '{name}': {err}", 413, name) from err
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
            raise InputError(
                "not_an_image",
                f"image '{name}' is not a readable {', '.join(formats)} image",
                415,
                name,
            ) from err
        width, height = img.size
        if width * height > lim["max_pixels"]:
            raise InputError(
                "too_many_pixels",
                f"image '{name}' is {width}x{height} pixels, more than the limit of "
                f"{lim['max_pixels']} pixels",
                413,
                name,
            )
        if img.mode not in lim["modes"]:
            raise InputError(
                "unsupported_mode",
                f"image '{name}' has mode {img.mode}; this model accepts {', '.join(lim['modes'])}",
                422,
                name,
            )
        (w_lo, w_hi), (h_lo, h_hi) = lim["width"], lim["height"]
        if not (w_lo <= width <= w_hi and h_lo <= height <= h_hi):
            raise InputError(
                "size_out_of_range",
                f"image '{name}' is {width}x{height}; this model accepts widths {w_lo}-{w_hi} "
                f"and heights {h_lo}-{h_hi} (its data contract)",
                422,
                name,
            )
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise InputError(
                "truncated_image",
                f"image '{name}' is truncated or corrupt ({str(err).splitlines()[0][:120]})",
                422,
                name,
            ) from err
        return img

    def preprocess(self, data: bytes, name: str = "image") -> np.ndarray:
        """The uint8 (3, h, w) array the ONNX graph takes, as training's ``load_image`` gives."""
        return self.preprocess_sized(data, name)[0]

    def preprocess_sized(
        self, data: bytes, name: str = "image"
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """``preprocess``'s array and the image's own (width, height), which an anomaly map's
        box is given in."""
        with self.decode(data, name) as img:
            rgb = np.asarray(img.convert("RGB"))
        array = resize_uint8(rgb, self.size, self.interpolation).transpose(2, 0, 1)
        return np.ascontiguousarray(array), (rgb.shape[1], rgb.shape[0])

    # -- prediction

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) of a uint8 batch (N, 3, h, w)."""
        return self.session.run(["probabilities"], {self.input_name: batch})[0]

    def decide(self, probs: np.ndarray) -> tuple[float | None, bool | None]:
        """The defect score and pass/fail of one image at the recorded operating point.

        The score is ``1 - p(good)`` in float32 and an image fails when it is ``>= threshold``
        in float32, exactly as training chose the threshold (``rates_at`` on float32 scores):
        in float64 a score that rounds to the threshold in float32 lands just below it and
        would pass. Passing is ``score < threshold``, so a nan score fails.
        """
        op = self.operating_point
        good = op.get("good_class")
        if good not in self.class_names:
            return None, None
        score = np.float32(1) - np.float32(probs[self.class_names.index(good)])
        if op["rule"] == "threshold":
            return float(score), bool(score < np.float32(op["threshold"]))
        return float(score), bool(int(np.argmax(probs)) == self.class_names.index(good))

    def anomaly_arrays(
        self, batch: np.ndarray, maps: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """An anomaly model's scores (N,) of a uint8 batch, and its maps (N, 1, h, w) if asked."""
        names = ["anomaly_score", "anomaly_map"] if maps else ["anomaly_score"]
        out = self.session.run(names, {self.input_name: batch})
        return out[0], out[1] if maps else None

    def passes(self, score: float) -> bool | None:
        """An anomaly model's decision: pass when the score is below the threshold, compared in
        float32 as training chose it (``score >= threshold`` fails; so does a nan score); None
        when the bundle records no threshold."""
        op = self.operating_point
        if op.get("rule") != "threshold" or op.get("threshold") is None:
            return None
        return bool(np.float32(score) < np.float32(op["threshold"]))

    def check_count(self, count: int) -> None:
        """Refuse an empty request or one over the batch limit, before anything is decoded."""
        if count == 0:
            raise InputError("no_images", "the request holds no image", 400)
        limit = self.limits["max_images"]
        if count > limit:
            raise InputError(
                "too_many_images",
                f"the request holds {count} images, more than the limit of {limit}",
                413,
            )

    def predict(self, images: list[tuple[str, bytes]], map: bool = False) -> dict[str, Any]:
        """Score ``(name, bytes)`` pairs; every image is checked before any is scored. ``map``:
        an anomaly model's answers carry their anomaly maps (a classifier refuses it)."""
        self.check_count(len(images))
        if map and self.kind != ANOMALY:
            raise InputError(
                "bad_request", "map: only an anomaly model has an anomaly map; drop map", 400
            )
        if self.kind == ANOMALY:
            return self._predict_anomaly(images, map)
        batch = np.stack([self.preprocess(data, name) for name, data in images])
        probs = self.predict_arrays(batch)
        predictions = []
        for (name, _), p in zip(images, probs, strict=True):
            score, passed = self.decide(p)
            predictions.append(
                {
                    "name": name,
                    "label": self.class_names[int(np.argmax(p))],
                    "probabilities": {
                        c: float(v) for c, v in zip(self.class_names, p, strict=True)
                    },
                    "defect_score": score,
                    "pass": passed,
                }
            )
        return {"predictions": predictions, "operating_point": self.operating_point}

    def _predict_anomaly(self, images: list[tuple[str, bytes]], map: bool) -> dict[str, Any]:
        arrays = [self.preprocess_sized(data, name) for name, data in images]
        scores, maps = self.anomaly_arrays(np.stack([a for a, _ in arrays]), map)
        threshold = self.operating_point.get("threshold")
        predictions = []
        for i, (name, _) in enumerate(images):
            answer = {
                "name": name,
                "anomaly_score": float(scores[i]),
                "pass": self.passes(scores[i]),
                "threshold": threshold,
            }
            if map:
                answer["map"] = anomaly_map(maps[i, 0], arrays[i][1], threshold)
            predictions.append(answer)
        return {"predictions": predictions, "operating_point": self.operating_point}

    def run(self, request: dict[str, Any] | str | bytes, map: bool = False) -> dict[str, Any]:
        """Score a JSON request ``{"images": [{"name": ..., "data": base64}]}`` (schema.json);
        ``map`` or the request's ``"map": true`` asks an anomaly model for its maps."""
        if isinstance(request, (str, bytes)):
            try:
                request = json.loads(request)
            except (ValueError, UnicodeDecodeError) as err:
                raise InputError("bad_request", f"the request is not JSON ({err})", 400) from err
        items = request.get("images") if isinstance(request, dict) else None
        if not isinstance(items, list):
            raise InputError("bad_request", "the request needs a list 'images'", 400)
        if not isinstance(request.get("map", False), bool):
            raise InputError("bad_request", "the request's 'map' must be true or false", 400)
        self.check_count(len(items))
        images = []
        for i, item in enumerate(items):
            name = str(item.get("name") or i) if isinstance(item, dict) else str(i)
            data = item.get("data") if isinstance(item, dict) else None
            if not isinstance(data, str):
                raise InputError("bad_request", f"image '{name}' needs base64 'data'", 400, name)
            if len(data) > self.limits["max_bytes"] * 4 // 3 + 4:
                raise InputError(
                    "file_too_large",
                    f"image '{name}' is over {self.limits['max_bytes']} bytes",
                    413,
                    name,
                )
            try:
                images.append((name, base64.b64decode(data, validate=True)))
            except (binascii.Error, ValueError) as err:
                raise InputError(
                    "bad_request", f"image '{name}': data is not base64", 400, name
                ) from err
        return self.predict(images, map or request.get("map", False))


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """ONNX Runtime settings measured fastest for batch-1 CPU scoring (scripts/bench/bench_serve.py).

    Full graph optimisation; one intra-op thread per session by default (``SCORE_THREADS``
    changes it): a server runs as many requests at once as there are cores, and on a shared
    machine more threads per run were slower, not faster.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(threads or os.environ.get("SCORE_THREADS") or 1)
    opts.inter_op_num_threads = 1
    return opts


_model: Model | None = None


def init(bundle_dir: str | Path | None = None, threads: int | None = None) -> Model:
    """Load the model once per process and set Pillow's decompression-bomb limits."""
    global _model
    _model = Model(bundle_dir or HERE, threads)
    protect_pillow(_model.limits["max_pixels"])
    return _model


def run(request: dict[str, Any] | str | bytes, map: bool = False) -> dict[str, Any]:
    """Score a request (see ``Model.run``); calls ``init()`` first when needed."""
    return (_model or init()).run(request, map)


# ---------------------------------------------------------------- anomaly maps


def map_png(amap: np.ndarray, scale: float) -> bytes:
    """``amap`` (h, w) as an 8-bit grayscale PNG: grey = round(255 * value / scale), clipped."""
    grey = np.clip(np.rint(amap * (255.0 / scale)), 0, 255) if scale > 0 else np.zeros_like(amap)
    buffer = io.BytesIO()
    Image.fromarray(grey.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def peak_region(amap: np.ndarray, level: float = MAP_LEVEL) -> tuple[np.ndarray, tuple[int, int]]:
    """The map pixels at least ``level`` of the way from the map's minimum to its maximum that
    are 4-connected to its peak (grown from the peak one ring at a time), and the peak (row, col)."""
    peak = np.unravel_index(int(np.argmax(amap)), amap.shape)
    low, high = float(amap.min()), float(amap.max())
    above = amap >= low + level * (high - low)
    region = np.zeros_like(above)
    region[peak] = True
    while True:
        grown = region.copy()
        grown[1:] |= region[:-1]
        grown[:-1] |= region[1:]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= above
        if np.array_equal(grown, region):
            return region, (int(peak[0]), int(peak[1]))
        region = grown


def anomaly_map(amap: np.ndarray, size: tuple[int, int], threshold: float | None) -> dict[str, Any]:
    """The answer's ``map`` of one image's anomaly map ``amap`` (h, w: the model's input side).

    ``png``: the map as a grayscale PNG of h x w pixels, base64, scaled so that 255 stands for
    ``scale`` = max(2 * threshold, the map's maximum) (without a threshold: its maximum): grey
    128 is about the threshold, and maps of different images compare. ``box``: [left, top,
    right, bottom) in the pixels of the image as sent (``size`` = its width, height; the map
    covers the whole image) around ``peak_region``; ``peak``: [x, y] of the map's maximum there.
    """
    h, w = amap.shape
    width, height = size
    high = float(amap.max())
    scale = max(2 * float(threshold), high) if threshold is not None else high
    region, (row, col) = peak_region(amap)
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    box = [
        int(cols[0]) * width // w,
        int(rows[0]) * height // h,
        -(-(int(cols[-1]) + 1) * width // w),
        -(-(int(rows[-1]) + 1) * height // h),
    ]
    return {
        "png": base64.b64encode(map_png(amap, scale)).decode("ascii"),
        "width": int(w),
        "height": int(h),
        "scale": scale,
        "max": high,
        "box": box,
        "peak": [(2 * col + 1) * width // (2 * w), (2 * row + 1) * height // (2 * h)],
        "level": MAP_LEVEL,
    }


# ---------------------------------------------------------------- command line


def _images_below(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]


def image_files(items: list[str]) -> list[Path]:
    """The images named by files, folders (recursively, hidden files skipped) and glob patterns,
    absolute, unique and sorted: the files ``python predict.py images=...`` scores.

    Raises:
        FileNotFoundError: an item names no image (a one-line message).
    """
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            images = _images_below(path)
            if not images:
                raise FileNotFoundError(f"folder '{path}' holds no {'/'.join(IMAGE_EXTENSIONS)}")
        elif path.is_file():
            images = [path]
        elif glob.has_magic(str(path)):
            matches = [Path(m) for m in glob.glob(str(path), recursive=True)]
            images = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS]
            images += [f for m in matches if m.is_dir() for f in _images_below(m)]
            if not images:
                raise FileNotFoundError(f"pattern '{path}' matches no image file")
        else:
            raise FileNotFoundError(f"'{path}' is neither an image file nor a folder")
        found += images
    return sorted({Path(os.path.abspath(p)) for p in found})


def _read(model: Model, files: list[Path]) -> tuple[dict[Path, np.ndarray], dict[Path, str]]:
    """The preprocessed arrays of ``files``, and the one-line error of each that cannot be read."""
    arrays, errors = {}, {}
    for path in files:
        try:
            arrays[path] = model.preprocess(path.read_bytes(), str(path))
        except (InputError, OSError) as err:
            errors[path] = str(err).splitlines()[0]
    return arrays, errors


def score_files(model: Model, files: list[Path], out: TextIO, batch_size: int = 32) -> int:
    """Write the CSV of ``files`` to ``out``; an unreadable file is a row with its error. Returns
    how many were scored. ``pass`` is filled only at a recorded threshold, as in predict.py.
    A classifier's columns are those of predict.py; an anomaly model's ``path, anomaly_score,
    pass, error``."""
    names = model.class_names
    anomaly = model.kind == ANOMALY
    writer = csv.writer(out, lineterminator="\n")
    if anomaly:
        header = ["path", "anomaly_score", "pass", "error"]
    else:
        header = ["path", "label", *(f"p_{c}" for c in names), "defect_score", "pass", "error"]
    writer.writerow(header)
    at_threshold = model.operating_point.get("rule") == "threshold"
    scored = 0
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        arrays, errors = _read(model, chunk)
        batch = np.stack(list(arrays.values())) if arrays else None
        if batch is None:
            outputs: Any = []
        else:
            outputs = model.anomaly_arrays(batch)[0] if anomaly else model.predict_arrays(batch)
        results = dict(zip(arrays, outputs, strict=True))
        for path in chunk:
            if path in errors:
                writer.writerow([path, *[""] * (len(header) - 2), errors[path]])
                continue
            if anomaly:
                score, passed = float(results[path]), model.passes(results[path])
                writer.writerow([path, score, {True: "true", False: "false"}.get(passed, ""), ""])
            else:
                p = results[path]
                score, passed = model.decide(p)
                verdict = {True: "true", False: "false"}.get(passed, "") if at_threshold else ""
                label = names[int(np.argmax(p))]
                writer.writerow(
                    [path, label, *map(float, p), "" if score is None else score, verdict, ""]
                )
            scored += 1
    return scored


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage and message
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def main(argv: list[str] | None = None) -> int:
    """``python score.py IMAGE... > predictions.csv``; exit 0, 1 when no image could be read,
    2 for usage errors."""
    parser = _Parser(
        prog="score.py",
        description="Score image files with this bundle: CSV on stdout, one row per file "
        "(a classifier: path, label, p_<class>..., defect_score, pass, error; an anomaly "
        "model: path, anomaly_score, pass, error).",
        epilog="exit codes: 0 scored, 1 no image could be read, 2 usage error",
    )
    parser.add_argument(
        "images", nargs="+", help="image files, folders (recursively) or glob patterns"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per run (32)")
    parser.add_argument(
        "--threads", type=int, help="ONNX Runtime threads (default: SCORE_THREADS or all cores)"
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: use 1 or more")
    try:
        files = image_files(args.images)
    except FileNotFoundError as err:
        parser.error(str(err))
    model = init(
        threads=args.threads or int(os.environ.get("SCORE_THREADS") or os.cpu_count() or 1)
    )
    if model.operating_point.get("rule") != "threshold":
        print(
            "score.py: no operating point in this bundle: the pass column is empty", file=sys.stderr
        )
    scored = score_files(model, files, sys.stdout, args.batch_size)
    print(f"score.py: scored {scored} of {len(files)} images", file=sys.stderr)
    return 0 if scored else 1


if __name__ == "__main__":
    sys.exit(main())
