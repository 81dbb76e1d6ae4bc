"""int8 bundles: ONNX Runtime's static quantization of the bundle's graph, calibrated on images.

    python scripts/export.py ckpt_path=last.ckpt quantize=int8            # train split calibrates
    python scripts/export.py ckpt_path=last.ckpt quantize=int8 calibration_dir=data/boards

``onnxruntime.quantization.quantize_static``: QDQ format, int8 weights per output channel, uint8
activations (the U8S8 kernels ONNX Runtime runs fastest on x86), MinMax ranges of the
calibration images as the bundle's own ``score.py`` preprocesses them (the graph takes resized
uint8 images). ``quant_pre_process`` first, without its symbolic shape inference, which fails on
the dynamo exporter's graph. The nodes that write the graph's outputs (the head's Gemm and the
Softmax) stay float32: quantized, the probabilities would come in steps of 1/255, too coarse
for a threshold on ``1 - p(good)``. The result must pass ``trainer.export.parity.check_int8``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trainer.export import ExportError
from trainer.export.parity import (
    bundle_images,
    check_int8,
    checkpoint_data,
    image_files,
    split_files,
)

METHOD = "onnxruntime quantize_static: QDQ, per-channel int8 weights, uint8 activations, MinMax"
BATCH = 16  # calibration images per run of the calibration graph
TRAIN = "train split"  # the calibration source when no calibration_dir is given


def int8_inputs(
    meta: dict[str, Any], calibration_dir: str | Path | None, count: int
) -> tuple[list[Path], str, list[tuple[Path, str]]]:
    """Calibration images (``count`` of ``calibration_dir``, else of the train split of the
    checkpoint's data), where they came from, and the val split's ``(file, class name)``."""
    instead = "quantize=int8 needs the val split to measure defect recall"
    data = checkpoint_data(meta, instead)
    samples = data.scan.splits.get("val") or []
    if not samples:
        raise ExportError(f"'{data.dataset_root}' has no val images; {instead}")
    val = [(s.path, data.scan.class_names[s.label]) for s in samples]
    if calibration_dir:
        return image_files(calibration_dir, count, "calibration_dir"), str(calibration_dir), val
    train = split_files(data, "train", count, "give calibration_dir=DIR to calibrate on")
    return train, TRAIN, val


def calibration_batches(scorer: Any, files: list[Path], option: str) -> Iterator[np.ndarray]:
    """uint8 batches of ``files`` as the bundle's ``score.py`` (``scorer``) preprocesses them."""
    for start in range(0, len(files), BATCH):
        yield bundle_images(scorer, files[start : start + BATCH], option)


def _output_nodes(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if outputs & set(n.output)]


def quantize_onnx(fp32: Path, out: Path, batches: Iterable[np.ndarray], input_name: str) -> None:
    """Write the int8 (QDQ) form of the ONNX model ``fp32`` to ``out``, ranges from ``batches``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory(prefix="quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_output_nodes(prepared),
        )


def quantize_bundle(
    folder: Path,
    model: Any,
    fp32: Any,
    files: list[Path],
    calibration: list[Path],
    calibration_source: str,
    val: list[tuple[Path, str]],
) -> dict[str, Any]:
    """Replace ``folder/model.onnx`` by its int8 form and gate it; the figures for the manifest.

    Args:
        folder: the bundle being written (its ``model.onnx`` passed the float32 parity check).
        model: the checkpoint's ``ImageClassifier``.
        fp32: the bundle's ``score.Model`` on the float32 graph (loaded before the swap).
        files: the parity images.
        calibration: the calibration images; ``calibration_source`` says where they came from.
        val: the val split's ``(file, class name)``, for defect recall.

    Raises:
        ExportError: when the int8 gate refuses (``check_int8``).
    """
    from trainer.export.runtime.server import load_score

    option = TRAIN if calibration_source == TRAIN else "calibration_dir"
    with tempfile.TemporaryDirectory(prefix="int8-") as work:
        int8_path = Path(work) / "model.onnx"
        batches = calibration_batches(fp32, calibration, option)
        quantize_onnx(folder / "model.onnx", int8_path, batches, fp32.input_name)
        shutil.copyfile(int8_path, folder / "model.onnx")
    int8 = load_score(folder).Model(folder)
    report = check_int8(model, int8, fp32, files, val)
    calibrated = {"source": calibration_source, "images": len(calibration)}
    return {"method": METHOD, "calibration": calibrated, **report}
