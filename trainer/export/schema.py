"""``schema.json``: a JSON Schema (draft 2020-12) of a bundle's request, response and errors.

Besides ``$defs`` for ``request``, ``response`` and ``error``, two annotation keywords carry
what a client and ``score.py`` need: ``x-model`` (class names, preprocessing, the ONNX input and
outputs, the operating point) and ``x-limits`` (formats, modes, sizes, bytes, batch). Limits
come from the checkpoint's data contract where it has one, else from ``Limits``' defaults.
Validate one part with ``jsonschema.validate(obj, subschema(schema, "request"))``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
MEDIA_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
}
# Modes that ``load_image`` turns into RGB without losing the picture (no 16-bit clipping, no
# naive CMYK): the default when the checkpoint has no data contract.
DEFAULT_MODES = ["RGB", "RGBA", "L", "LA", "P"]
ANY_SIDE = [1, 8192]
ERROR_CODES = [
    "bad_request",
    "no_images",
    "too_many_images",
    "request_too_large",
    "length_required",
    "empty_file",
    "file_too_large",
    "not_an_image",
    "truncated_image",
    "too_many_pixels",
    "unsupported_mode",
    "size_out_of_range",
    "unsupported_media_type",
    "body_timeout",  # the server's: 408, the body did not arrive in time
    "overloaded",  # 503 with Retry-After: too many request bytes in flight
    "internal_error",  # 500
]


@dataclass
class Limits:
    """What a request may hold. Defaults suit camera frames; the data contract narrows them.

    Args:
        max_images: images per request (the batch limit).
        max_bytes: bytes per image file.
        max_pixels: width x height per image; also Pillow's decompression-bomb limit.
        width, height: accepted ``[min, max]`` of each side in pixels.
        modes: Pillow modes accepted.
        formats: Pillow formats accepted (others are never parsed).
    """

    max_images: int = 32
    max_bytes: int = 10 * 2**20
    max_pixels: int = 4096 * 4096
    width: list[int] = field(default_factory=lambda: list(ANY_SIDE))
    height: list[int] = field(default_factory=lambda: list(ANY_SIDE))
    modes: list[str] = field(default_factory=lambda: list(DEFAULT_MODES))
    formats: list[str] = field(default_factory=lambda: list(MEDIA_TYPES))
    source: str = "defaults"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "media_types": [MEDIA_TYPES[f] for f in self.formats]}


def limits_from_contract(contract: dict[str, Any] | None, **overrides: Any) -> Limits:
    """Limits from the checkpoint's data contract, then explicit ``overrides`` (None: unset).

    The contract (``trainer.data.checks.contract``) records the training split's image modes and the
    range of widths and heights: a server then refuses a mode or a size the model never saw
    (a new camera, a grayscale feed). Formats stay all those the loader reads.
    """
    limits = Limits()
    image = (contract or {}).get("image") or {}
    if image.get("modes"):
        limits.modes = sorted(image["modes"])  # a {mode: count} dict or a list
        limits.source = "data_contract"
    for side in ("width", "height"):
        if isinstance(image.get(side), (list, tuple)) and len(image[side]) == 2:
            setattr(limits, side, [int(v) for v in image[side]])
            limits.source = "data_contract"
    for key, value in overrides.items():
        if value is not None:
            setattr(limits, key, value)
    return limits


def operating_point_from(meta: dict[str, Any]) -> dict[str, Any]:
    """The pass/fail rule: the checkpoint's threshold on ``1 - p(good)``, else argmax == good."""
    op = meta.get("operating_point")
    if op and op.get("threshold") is not None:
        return {
            **op,
            "rule": "threshold",
            "good_class": op.get("good_class", "good"),
            "score": op.get("score", "1 - p(good)"),
            "threshold": float(op["threshold"]),
            "target_recall": op.get("target_recall"),
            "note": "fail when the defect score (1 - p(good)) >= threshold",
        }
    data_cfg = (meta.get("config") or {}).get("data") or {}
    good = data_cfg.get("good_class", "good")
    if good not in meta["class_names"]:
        return {"rule": "none", "good_class": None, "score": None, "threshold": None,
                "note": "the classes have no good class: no pass/fail, only labels"}  # fmt: skip
    return {
        "rule": "argmax",
        "good_class": good,
        "score": "1 - p(good)",
        "threshold": None,
        "target_recall": None,
        "note": "no operating point recorded in the checkpoint: pass when the most probable "
        f"class is '{good}'",
    }


def build_schema(
    meta: dict[str, Any], limits: Limits, model_info: dict[str, Any]
) -> dict[str, Any]:
    """The schema document for a checkpoint's ``meta`` (its ``trainer_metadata``).

    Args:
        meta: the checkpoint's metadata: class names, preprocessing, backbone, config.
        limits: what a request may hold.
        model_info: the ONNX input and outputs and the opset (from ``onnx_export``).
    """
    classes = list(meta["class_names"])
    lim = limits.to_dict()
    n = lim["max_images"]
    image = {
        "type": "object",
        "required": ["data"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 256, "description": "echoed in the answer"},
            "data": {
                "type": "string",
                "contentEncoding": "base64",
                "minLength": 1,
                "maxLength": (lim["max_bytes"] + 2) // 3 * 4,
                "description": f"the file's bytes, base64: one of {', '.join(lim['media_types'])}",
            },
        },
    }
    prediction = {
        "type": "object",
        "required": ["name", "label", "probabilities", "defect_score", "pass"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "label": {"enum": classes, "description": "the most probable class"},
            "probabilities": {
                "type": "object",
                "required": classes,
                "additionalProperties": False,
                "properties": {c: {"type": "number", "minimum": 0, "maximum": 1} for c in classes},
            },
            "defect_score": {
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 1,
                "description": "1 - p(good); null when the classes have no good class",
            },
            "pass": {
                "type": ["boolean", "null"],
                "description": "pass/fail at the operating point (x-model.operating_point)",
            },
        },
    }
    op = operating_point_from(meta)
    return {
        "$schema": DRAFT,
        "title": f"{meta['backbone']} image classifier: {', '.join(classes)}",
        "description": "POST /predict takes multipart/form-data (one file per image, any field "
        "name), a raw image body (image/* or application/octet-stream: one image), or "
        "application/json as $defs/request. It answers $defs/response, or $defs/error with a "
        "4xx status.",
        "type": "object",
        "properties": {
            "request": {"$ref": "#/$defs/request"},
            "response": {"$ref": "#/$defs/response"},
            "error": {"$ref": "#/$defs/error"},
        },
        "$defs": {
            "image": image,
            "request": {
                "type": "object",
                "required": ["images"],
                "additionalProperties": False,
                "properties": {
                    "images": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": n,
                        "items": {"$ref": "#/$defs/image"},
                    }
                },
            },
            "prediction": prediction,
            "response": {
                "type": "object",
                "required": ["predictions", "operating_point"],
                "additionalProperties": False,
                "properties": {
                    "predictions": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": n,
                        "items": {"$ref": "#/$defs/prediction"},
                    },
                    "operating_point": {"type": "object", "required": ["rule", "good_class"]},
                },
            },
            "error": {
                "type": "object",
                "required": ["error"],
                "additionalProperties": False,
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"enum": ERROR_CODES},
                            "message": {"type": "string"},
                            "image": {"type": ["string", "null"]},
                        },
                    }
                },
            },
        },
        "x-model": {
            "backbone": meta["backbone"],
            "class_names": classes,
            "preprocessing": {
                **meta["preprocessing"],
                "steps": [
                    "decode with Pillow, convert to RGB",
                    f"resize the whole image to {meta['preprocessing']['resize']} (h, w), "
                    f"{meta['preprocessing']['interpolation']}, antialiased, on uint8 "
                    "(torchvision's kernel; no crop)",
                    "uint8 NCHW batch into the ONNX graph, which computes "
                    "(x - mean*255) / (std*255)",
                ],
            },
            "operating_point": op,
            **model_info,
        },
        "x-limits": lim,
    }


def subschema(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A schema that validates one of ``$defs`` (``request``, ``response``, ``error``)."""
    return {"$schema": DRAFT, "$defs": schema["$defs"], "$ref": f"#/$defs/{name}"}
