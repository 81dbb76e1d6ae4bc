"""An anomaly model's bundle: ONNX with the memory bank inside, its parity gate and refusals."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.helpers.anomaly_fixtures import torch_scores
from tests.helpers.export_fixtures import LIMITS, split_images
from trainer.checkpoint.read import load_model
from trainer.data.dataset import load_image
from trainer.export import ExportError
from trainer.export.anomaly_parity import RTOL, check_anomaly_parity
from trainer.export.bundle import export_bundle

FILES = {
    "model.onnx",
    "model.pt2",
    "schema.json",
    "score.py",
    "server.py",
    "requirements.txt",
    "Dockerfile",
    "manifest.json",
}


def test_bundle_describes_an_anomaly_model(anomaly_bundle: Path) -> None:
    assert {p.name for p in anomaly_bundle.iterdir()} == FILES
    manifest = json.loads((anomaly_bundle / "manifest.json").read_text())
    assert manifest["kind"] == "anomaly" and manifest["precision"] == "fp32"
    parity = manifest["parity"]
    assert parity["images"] == 16 and parity["fail"] == 8  # the fixture's threshold: half fail
    for name in ("onnx", "score.py", "model.pt2"):
        assert parity[name]["pass_fail_differ"] == 0
        assert parity[name]["score_max_rel_diff"] <= RTOL
    schema = json.loads((anomaly_bundle / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    model = schema["x-model"]
    assert model["kind"] == "anomaly" and model["anomaly"]["method"] == "patchcore"
    assert [o["name"] for o in model["outputs"]] == ["anomaly_score", "anomaly_map"]
    assert model["outputs"][1]["shape"] == ["batch", 1, 64, 64]
    op = model["operating_point"]
    assert op["rule"] == "threshold" and op["chosen_by"] == "target_false_reject"
    assert schema["x-limits"]["width"] == [64, 64] and schema["x-limits"]["modes"] == ["RGB"]


def test_onnx_runtime_gives_pytorchs_scores_and_decisions(
    anomaly_bundle: Path, anomaly_checkpoint: Path
) -> None:
    model = load_model(anomaly_checkpoint)
    files = split_images(anomaly_bundle.parents[1])
    want, want_maps = torch_scores(model, files)
    pre = model.preprocessing
    images = np.stack([load_image(f, pre["resize"], pre["interpolation"]).numpy() for f in files])
    graph = onnx.load(str(anomaly_bundle / "model.onnx"))
    bank = model.memory_bank.numpy()
    assert any(
        np.array_equal(onnx.numpy_helper.to_array(t), bank) for t in graph.graph.initializer
    ), "the memory bank is not inside model.onnx"
    session = ort.InferenceSession(str(anomaly_bundle / "model.onnx"))
    threshold = json.loads((anomaly_bundle / "schema.json").read_text())["x-model"][
        "operating_point"
    ]["threshold"]
    fails = want >= np.float32(threshold)
    assert fails.sum() == 8  # both decisions occur: the comparison below can fail
    for batch in (1, 5, len(files)):  # the dynamic batch axis
        scores, maps = session.run(None, {"image": images[:batch]})
        assert np.abs(scores - want[:batch]).max() <= RTOL * np.abs(want[:batch]).min()
        assert np.abs(maps - want_maps[:batch]).max() <= RTOL * np.abs(want_maps[:batch]).max()
        assert np.array_equal(scores >= np.float32(threshold), fails[:batch])
    program = torch.export.load(str(anomaly_bundle / "model.pt2")).module()
    with torch.no_grad():
        scores = program(torch.from_numpy(images))[0].numpy()
    np.testing.assert_allclose(scores, want, rtol=RTOL)


def test_parity_refuses_a_corrupted_bank(
    anomaly_bundle: Path, anomaly_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    """model.onnx with another memory bank (the good bundle's graph, its bank moved a little) and
    the good model.pt2: parity must refuse, and leave nothing behind."""
    from trainer.export import onnx_export

    described = json.loads((anomaly_bundle / "schema.json").read_text())["x-model"]
    info = {k: described[k] for k in ("format", "opset", "input", "outputs", "max_batch")}
    bank = load_model(anomaly_checkpoint).memory_bank.numpy()

    def corrupted(module, size, path):
        graph = onnx.load(str(anomaly_bundle / "model.onnx"))
        (tensor,) = [
            t
            for t in graph.graph.initializer
            if np.array_equal(onnx.numpy_helper.to_array(t), bank)
        ]
        tensor.CopyFrom(onnx.numpy_helper.from_array(bank * 1.05, tensor.name))
        onnx.save(graph, str(path))
        return copy.deepcopy(info)

    monkeypatch.setattr(onnx_export, "export_onnx", corrupted)
    monkeypatch.setattr(
        onnx_export,
        "export_program",
        lambda module, size, path: shutil.copyfile(anomaly_bundle / "model.pt2", path),
    )
    out = tmp_path / "bad"
    with pytest.raises(ExportError, match="parity: onnx disagrees .* the bundle was not written"):
        export_bundle(anomaly_checkpoint, out=out, parity_images=4, **LIMITS)
    assert list(tmp_path.iterdir()) == []  # no bundle, no leftovers


def test_parity_refuses_decisions_that_differ(anomaly_checkpoint: Path) -> None:
    """A score well within the tolerance that crosses the threshold is still refused."""
    model = load_model(anomaly_checkpoint)
    files = split_images(anomaly_checkpoint.parents[1])[:4]
    want, want_maps = torch_scores(model, files)
    pre = model.preprocessing
    images = {f.name: load_image(f, pre["resize"], pre["interpolation"]).numpy() for f in files}

    class Scorer:  # score.py's interface; image 0 lies on the threshold, nudged just below it
        operating_point = {"rule": "threshold", "threshold": float(want[0])}

        def __init__(self, nudge: float) -> None:
            self.nudge = nudge

        def preprocess(self, data: bytes, name: str) -> np.ndarray:
            return images[name]

        def anomaly_arrays(self, batch: np.ndarray, maps: bool) -> tuple:
            scores = want[: len(batch)].copy()
            scores[0] = np.nextafter(scores[0], np.float32(-1)) if self.nudge else scores[0]
            return scores, want_maps[: len(batch)]

        def passes(self, score: float) -> bool:  # score.py's rule
            return bool(np.float32(score) < np.float32(self.operating_point["threshold"]))

    report = check_anomaly_parity(model, Scorer(0), files)
    assert report["score.py"]["pass_fail_differ"] == 0 and report["closest_to_threshold"] == 0
    with pytest.raises(ExportError, match="pass/fail decisions that differ: 1"):
        check_anomaly_parity(model, Scorer(1), files)


def test_int8_is_refused_for_an_anomaly_model(anomaly_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="quantize: int8 is not supported for an anomaly model"):
        export_bundle(anomaly_checkpoint, out=tmp_path / "int8", quantize="int8")
    assert list(tmp_path.iterdir()) == []
