"""Score images with an exported bundle: ``init()`` once, then ``run(request)`` per request.

This file is copied into every bundle as ``score.py``. It needs only onnxruntime, numpy and
Pillow (the bundle's ``requirements.txt``): no torch, no import of the ``trainer`` package, so
it runs in a small container. Usage, from the bundle folder::

    import score
    score.init()                      # reads schema.json and model.onnx next to this file
    score.run({"images": [{"name": "board.png", "data": "<base64 of the file>"}]})

``run`` returns ``{"predictions": [...], ...}`` as ``schema.json`` describes; input the model
cannot take raises ``InputError`` (``code``, HTTP ``status``, one-line message naming the image).

Preprocessing reproduces the training pipeline's evaluation transform exactly: decode with
Pillow, convert to RGB, then a square antialiased resize that is a numpy port of the uint8
kernel torchvision runs in training (``TF.resize(uint8, antialias=True)``, Pillow's algorithm
with 16-bit fixed-point weights). Pillow's own ``Image.resize`` uses 22-bit weights and differs
by one grey level on a few pixels in a thousand, hence the port. Normalisation is inside the
ONNX graph, which takes the resized uint8 images.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageFile, UnidentifiedImageError

HERE = Path(__file__).resolve().parent


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
        with self.decode(data, name) as img:
            rgb = np.asarray(img.convert("RGB"))
        return np.ascontiguousarray(
            resize_uint8(rgb, self.size, self.interpolation).transpose(2, 0, 1)
        )

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

    def predict(self, images: list[tuple[str, bytes]]) -> dict[str, Any]:
        """Score ``(name, bytes)`` pairs; every image is checked before any is scored."""
        self.check_count(len(images))
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

    def run(self, request: dict[str, Any] | str | bytes) -> dict[str, Any]:
        """Score a JSON request ``{"images": [{"name": ..., "data": base64}]}`` (schema.json)."""
        if isinstance(request, (str, bytes)):
            try:
                request = json.loads(request)
            except (ValueError, UnicodeDecodeError) as err:
                raise InputError("bad_request", f"the request is not JSON ({err})", 400) from err
        items = request.get("images") if isinstance(request, dict) else None
        if not isinstance(items, list):
            raise InputError("bad_request", "the request needs a list 'images'", 400)
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
        return self.predict(images)


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


def run(request: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """Score a request (see ``Model.run``); calls ``init()`` first when needed."""
    return (_model or init()).run(request)
