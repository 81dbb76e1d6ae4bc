"""The deployable network and its two exported forms: ONNX (``model.onnx``) and ``model.pt2``.

The graph takes the resized uint8 images (N, 3, h, w) and does the normalisation itself, with
the checkpoint's own mean and std buffers, exactly as ``ImageClassifier.normalize``. A classifier
answers logits and probabilities (``Deployable``); an anomaly model (PatchCore) its scores and
anomaly maps, the memory bank a constant of the graph (``AnomalyDeployable``). Why uint8
and not normalised floats: the constants then live in one place (the graph) and a client cannot
get them wrong; a uint8 batch is a quarter of the bytes; and the client's part (decode, resize
to uint8) is integer work it can reproduce bit for bit (see ``trainer.export.runtime.score.resize_uint8``).
The resize stays outside the graph: ONNX's antialiased Resize works on floats and would not
round like training's uint8 kernel, and images of different sizes could not share a batch.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

OPSET = 20  # ONNX opset of model.onnx: ONNX Runtime >= 1.17 runs it
INPUT = "image"
MAX_BATCH = 1024


class Deployable(nn.Module):
    """uint8 images (N, 3, h, w) -> (logits, softmax probabilities), normalisation inside.

    Args:
        net: the classifier's timm network (``ImageClassifier.net``).
        mean, std: the classifier's buffers, already scaled by 255, shaped (1, 3, 1, 1).
    """

    @staticmethod
    def outputs(size: list[int]) -> list[dict[str, Any]]:
        """The graph's outputs as the schema describes them (``size``: the input's h, w)."""
        return [
            {"name": "logits", "dtype": "float32", "shape": ["batch", "classes"]},
            {"name": "probabilities", "dtype": "float32", "shape": ["batch", "classes"]},
        ]

    def __init__(self, net: nn.Module, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.net((images.float() - self.mean) / self.std)
        return logits, logits.softmax(dim=-1)


class AnomalyDeployable(nn.Module):
    """uint8 images (N, 3, h, w) -> (anomaly scores (N,), anomaly maps (N, 1, h, w)).

    PatchCore's own ``normalize`` and ``forward``: its backbone, memory bank and neighbour table
    become constants of the graph (nearest neighbour as MatMul and ReduceMin).
    """

    @staticmethod
    def outputs(size: list[int]) -> list[dict[str, Any]]:
        """The graph's outputs as the schema describes them (``size``: the input's h, w)."""
        return [
            {"name": "anomaly_score", "dtype": "float32", "shape": ["batch"]},
            {"name": "anomaly_map", "dtype": "float32", "shape": ["batch", 1, *size]},
        ]

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.model(self.model.normalize(images))


def deployable(model: Any) -> nn.Module:
    """The deployable form of an ``ImageClassifier`` or an anomaly model, in eval mode."""
    if getattr(model, "kind", None) == "anomaly":
        return AnomalyDeployable(model).eval()
    return Deployable(model.net, model.mean, model.std).eval()


def _example(size: list[int]) -> Tensor:
    return torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8)  # 2: batch stays symbolic


def _dynamic() -> dict[str, dict[int, Any]]:
    return {"images": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Loggers ``names`` at WARNING for a while: the exporter's optimizer passes log every node
    they skip at INFO (the memory bank's in full), which an entry's logging config would print."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(module: nn.Module, size: list[int], path: Path) -> dict[str, Any]:
    """Write ``module`` as one ONNX file (dynamo exporter, dynamic batch); describe its I/O."""
    import onnx

    with (
        torch.no_grad(),
        contextlib.redirect_stdout(io.StringIO()),  # its progress lines
        _quiet("onnxscript", "onnx_ir"),
    ):
        torch.onnx.export(
            module,
            (_example(size),),
            str(path),
            input_names=[INPUT],
            output_names=[o["name"] for o in module.outputs(size)],
            dynamic_shapes=_dynamic(),
            opset_version=OPSET,
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    onnx.checker.check_model(str(path))
    return {
        "format": "onnx",
        "opset": OPSET,
        "input": {
            "name": INPUT,
            "dtype": "uint8",
            "shape": ["batch", 3, *size],
            "layout": "NCHW",
            "channel_order": "RGB",
        },
        "outputs": module.outputs(size),
        "max_batch": MAX_BATCH,
    }


def export_program(module: nn.Module, size: list[int], path: Path) -> None:
    """Write ``module`` as a ``torch.export`` program (``torch.export.load(path).module()``).

    The example inputs are dropped before saving: ``torch.export.save`` would pickle them, and
    the bundle holds no pickle (weights are stored as raw bytes).
    """
    with torch.no_grad():
        program = torch.export.export(module, (_example(size),), dynamic_shapes=_dynamic())
    program._example_inputs = None
    torch.export.save(program, str(path))
