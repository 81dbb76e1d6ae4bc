"""``schema.json``: a JSON Schema (draft 2020-12) of a bundle's request, response and errors.

Besides ``$defs`` for ``request``, ``response`` and ``error``, two annotation keywords carry
what a client and ``score.py`` need: ``x-model`` (its kind, class names, preprocessing, the ONNX
input and outputs, the operating point) and ``x-limits`` (formats, modes, sizes, bytes, batch).
Limits come from the checkpoint's data contract where it has one, else from ``Limits``'
defaults. A classifier's prediction holds its label and probabilities; an anomaly model's
(``x-model.kind`` ``anomaly``) its anomaly score, pass/fail and threshold, and, when asked,
``$defs/anomaly_map``.
Validate one part with ``jsonschema.validate(obj, subschema(schema, "request"))``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ANOMALY = "anomaly"  # trainer_metadata["kind"] of an anomaly model (trainer.models.patchcore.KIND)
ANOMALY_SCORE = "anomaly score"  # what its threshold applies to (trainer.evaluation.anomaly.SCORE)
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
    """The pass/fail rule: the checkpoint's threshold on ``1 - p(good)``, else argmax == good;
    an anomaly model's threshold on its anomaly score."""
    op = meta.get("operating_point")
    if meta.get("kind") == ANOMALY:
        return anomaly_operating_point(meta)
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


def anomaly_operating_point(meta: dict[str, Any]) -> dict[str, Any]:
    """An anomaly model's rule: fail when its score >= the checkpoint's threshold (``chosen_by``
    keeps how training chose it: ``target_recall`` or ``target_false_reject``)."""
    op = meta.get("operating_point") or {}
    good = (meta.get("anomaly") or {}).get("good_class", "good")
    if op.get("threshold") is None:
        return {"rule": "none", "good_class": good, "score": ANOMALY_SCORE, "threshold": None,
                "note": "no operating point recorded in the checkpoint: scores, no pass/fail"}  # fmt: skip
    return {
        **op,
        "chosen_by": op.get("rule"),
        "rule": "threshold",
        "good_class": good,
        "score": ANOMALY_SCORE,
        "threshold": float(op["threshold"]),
        "note": "fail when the anomaly score >= threshold (compared in float32)",
    }


ANOMALY_MAP = {
    "type": "object",
    "required": ["png", "width", "height", "scale", "max", "box", "peak", "level"],
    "additionalProperties": False,
    "description": 'only when asked (POST /predict?map=true, or "map": true in the request)',
    "properties": {
        "png": {
            "type": "string",
            "contentEncoding": "base64",
            "contentMediaType": "image/png",
            "description": "the anomaly map, width x height (the model's input size, covering "
            "the whole image), 8-bit grayscale: grey = round(255 * value / scale)",
        },
        "width": {"type": "integer", "minimum": 1},
        "height": {"type": "integer", "minimum": 1},
        "scale": {
            "type": "number",
            "minimum": 0,
            "description": "the map value grey 255 stands for: max(2 * threshold, max); grey 128 "
            "is about the threshold",
        },
        "max": {"type": "number", "description": "the map's largest value"},
        "box": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 4,
            "maxItems": 4,
            "description": "[left, top, right, bottom), in the pixels of the image as sent: the "
            "map pixels at least `level` of the way from the map's minimum to its maximum, "
            "4-connected to its peak",
        },
        "peak": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 2,
            "maxItems": 2,
            "description": "[x, y] of the map's maximum, in the pixels of the image as sent",
        },
        "level": {"type": "number", "minimum": 0, "maximum": 1},
    },
}


def anomaly_prediction() -> dict[str, Any]:
    """``$defs/prediction`` of an anomaly model."""
    return {
        "type": "object",
        "required": ["name", "anomaly_score", "pass", "threshold"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "anomaly_score": {
                "type": "number",
                "minimum": 0,
                "description": "how unlike the good training images: the largest distance of a "
                "patch to the memory bank of good patches, re-weighted (PatchCore)",
            },
            "pass": {
                "type": ["boolean", "null"],
                "description": "anomaly_score < threshold; null when no threshold was recorded",
            },
            "threshold": {"type": ["number", "null"]},
            "map": {"$ref": "#/$defs/anomaly_map"},
        },
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
    anomaly = meta.get("kind") == ANOMALY
    request_properties: dict[str, Any] = {
        "images": {
            "type": "array",
            "minItems": 1,
            "maxItems": n,
            "items": {"$ref": "#/$defs/image"},
        }
    }
    extra_defs: dict[str, Any] = {}
    title = f"{meta['backbone']} image classifier: {', '.join(classes)}"
    if anomaly:
        prediction = anomaly_prediction()
        request_properties["map"] = {"type": "boolean", "description": "answer the maps too"}
        extra_defs["anomaly_map"] = ANOMALY_MAP
        title = f"{meta['backbone']} anomaly model ({meta['anomaly']['method']}): good or not"
    return {
        "$schema": DRAFT,
        "title": title,
        "description": "POST /predict takes multipart/form-data (one file per image, any field "
        "name), a raw image body (image/* or application/octet-stream: one image), or "
        "application/json as $defs/request. It answers $defs/response, or $defs/error with a "
        "4xx status."
        + (" An anomaly model answers its maps too with ?map=true." if anomaly else ""),
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
                "properties": request_properties,
            },
            "prediction": prediction,
            **extra_defs,
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
            "kind": ANOMALY if anomaly else "classifier",
            "backbone": meta["backbone"],
            **({"anomaly": meta["anomaly"]} if anomaly else {}),
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
