"""The model files a bundle holds, as data (after ultralytics' ``export_formats()``): a format is
one row here and one writer in ``trainer.export.onnx_export``, and the bundle writer, the
manifest and the README's table all read this one list."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FORMATS", "Format"]


@dataclass(frozen=True)
class Format:
    """One exported form of the network (uint8 images in, logits and probabilities out).

    Args:
        name: what the manifest calls it.
        file: its file in the bundle.
        writer: the function of ``trainer.export.onnx_export`` that writes it.
        runs_on: what loads it.
        served: whether the bundle's ``score.py`` and ``server.py`` run it.
    """

    name: str
    file: str
    writer: str
    runs_on: str
    served: bool


FORMATS = (
    Format("onnx", "model.onnx", "export_onnx", "onnxruntime (score.py, server.py)", True),
    Format("torch.export", "model.pt2", "export_program", "torch.export.load(p).module()", False),
)
