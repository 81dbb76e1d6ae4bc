"""quantize=int8: the int8 bundle, its gate's figures against counts by hand, and its refusals."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from sklearn.metrics import recall_score

from tests.helpers.export_fixtures import load_score_module, split_images
from trainer.checkpoint.read import load_classifier
from trainer.data.dataset import load_image
from trainer.export import ExportError, quantize
from trainer.export.bundle import export_bundle
from trainer.export.parity import check_int8, dataset_test_files


@pytest.fixture(scope="module")
def int8_bundle(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "bundle"
    return export_bundle(
        checkpoint, out=out, quantize="int8", parity_images=8, calibration_images=16
    )


def _uint8(model: Any, files: list[Path]) -> torch.Tensor:
    pre = model.preprocessing
    return torch.stack([load_image(f, pre["resize"], pre["interpolation"]) for f in files])


def test_int8_bundle_records_its_gate(int8_bundle: Path, checkpoint: Path) -> None:
    manifest = json.loads((int8_bundle / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    int8 = manifest["parity"]["int8"]
    assert int8["calibration"] == {"source": "train split", "images": 16}
    graph = onnx.load(str(int8_bundle / "model.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 10 and "DequantizeLinear" in ops
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 10  # the convolutions' weights
    head = {o for n in graph.node if n.op_type in ("Gemm", "Softmax") for o in n.output}
    assert {"logits", "probabilities"} <= head  # the outputs come from float nodes
    # agreement, counted by hand: training's images through PyTorch and through the int8 graph
    model = load_classifier(checkpoint)
    session = ort.InferenceSession(str(int8_bundle / "model.onnx"))
    files = dataset_test_files(model.run_metadata, 8)
    images = _uint8(model, files)
    with torch.no_grad():
        reference = model(model.normalize(images)).argmax(1).numpy()
    labels = session.run(["probabilities"], {"image": images.numpy()})[0].argmax(1)
    assert int8["images"] == 8 and int8["agreement"] == (labels == reference).sum() / 8
    # defect recall on the whole val split (no threshold recorded: a defect is argmax != good)
    val = sorted(checkpoint.parents[2].rglob("val/*/*.png"))
    is_defect = np.array([f.parent.name != "good" for f in val])
    val_images = _uint8(model, val)
    good = model.class_names.index("good")
    with torch.no_grad():
        fp32 = model(model.normalize(val_images)).argmax(1).numpy() != good
    int8_flags = session.run(["probabilities"], {"image": val_images.numpy()})[0].argmax(1) != good
    recall = int8["defect_recall"]
    assert recall["fp32"] == recall_score(is_defect, fp32)
    assert recall["int8"] == recall_score(is_defect, int8_flags)
    assert recall["rule"] == "argmax"
    assert (int8["val_images"], int8["val_defects"]) == (len(val), int(is_defect.sum()))


def test_int8_bundle_scores_with_score_py(int8_bundle: Path, checkpoint: Path) -> None:
    from trainer.export.runtime.server import load_score, public_metadata

    files = split_images(checkpoint.parents[2])[:3]
    score = load_score_module(int8_bundle, "score_int8")
    scorer = score.Model(int8_bundle)  # its sha256 check against the manifest passes
    request = {"images": [{"name": f.name, "data": base64.b64encode(f.read_bytes()).decode()}
                          for f in files]}  # fmt: skip
    answer = scorer.run(request)
    batch = np.stack([scorer.preprocess(f.read_bytes(), f.name) for f in files])
    session = ort.InferenceSession(str(int8_bundle / "model.onnx"))
    expected = session.run(["probabilities"], {"image": batch})[0]
    for prediction, probs in zip(answer["predictions"], expected, strict=True):
        assert prediction["label"] == scorer.class_names[int(probs.argmax())]
        got = [prediction["probabilities"][c] for c in scorer.class_names]
        np.testing.assert_allclose(got, probs, rtol=1e-6)
    served = public_metadata(int8_bundle, load_score(int8_bundle).Model(int8_bundle), {})
    manifest = json.loads((int8_bundle / "manifest.json").read_text())
    assert served["bundle"]["parity"]["int8"] == manifest["parity"]["int8"]  # GET /metadata


class Table:
    """``score.Model``'s interface with probabilities from a table, looked up by file name;
    pass/fail by score.py's rule at a threshold."""

    def __init__(self, class_names: list[str], rows: dict[str, np.ndarray], threshold: float):
        self.class_names = class_names
        self.operating_point = {"rule": "threshold", "threshold": threshold, "good_class": "good"}
        self.names, self.rows = list(rows), np.stack(list(rows.values()))

    def preprocess(self, data: bytes, name: str) -> np.ndarray:
        return np.array([self.names.index(name)])

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        return self.rows[batch[:, 0]]

    def decide(self, probs: np.ndarray) -> tuple[float, bool]:
        score = np.float32(1) - np.float32(probs[self.class_names.index("good")])
        return float(score), bool(score < np.float32(self.operating_point["threshold"]))


def test_gate_figures_match_counts_by_hand(checkpoint: Path, tmp_path: Path) -> None:
    model = load_classifier(checkpoint)
    names, good = model.class_names, model.class_names.index("good")
    files = split_images(checkpoint.parents[2])[:4]
    with torch.no_grad():
        reference = model(model.normalize(_uint8(model, files))).softmax(-1).numpy()
    flipped = reference.copy()
    flipped[1] = np.roll(flipped[1], 1)  # another label for parity image 1 of 4
    # val: 4 defects and 2 good boards; defect scores (1 - p(good)) for float32 and int8
    classes = ["missing_component"] * 4 + ["good"] * 2
    scores = {"fp32": [0.9, 0.8, 0.7, 0.2, 0.1, 0.6], "int8": [0.9, 0.4, 0.7, 0.2, 0.1, 0.6]}
    val = []
    for i, name in enumerate(classes):
        (tmp_path / f"v{i}.png").write_bytes(b"x")
        val.append((tmp_path / f"v{i}.png", name))

    def table(kind: str) -> Table:
        rows = {f.name: row for f, row in zip(files, flipped, strict=True)}
        for (f, _), s in zip(val, scores[kind], strict=True):
            rows[f.name] = np.array([1 - s if c == good else s * (c == 1) for c in range(4)])
        return Table(names, rows, threshold=0.5)

    fp32, int8 = table("fp32"), table("int8")
    report = check_int8(model, int8, fp32, files, val, min_agreement=0.7, max_recall_drop=0.3)
    truth = [c != "good" for c in classes]
    assert report["agreement"] == 3 / 4
    for kind in ("fp32", "int8"):
        flagged = [s >= 0.5 for s in scores[kind]]
        assert report["defect_recall"][kind] == recall_score(truth, flagged)  # 0.75, 0.5
    assert (report["val_images"], report["val_defects"]) == (6, 4)
    with pytest.raises(ExportError, match=r"^int8: .* on 75\.0% of 4 images \(needs >= 99%\)"):
        check_int8(model, int8, fp32, files, val)
    with pytest.raises(
        ExportError, match=r"recall on 6 val images is 0\.5000 against 0\.7500 in float32"
    ):
        check_int8(model, int8, fp32, files, val, min_agreement=0.7, max_recall_drop=0.2)


def test_refused_int8_bundle_leaves_nothing(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    impossible = functools.partial(check_int8, min_agreement=1.01)
    monkeypatch.setattr(quantize, "check_int8", impossible)
    out = tmp_path / "bundle"
    images = split_images(checkpoint.parents[2])[0].parent
    with pytest.raises(ExportError, match=r"on 100\.0% of 4 images \(needs >= 101%\).*not written"):
        export_bundle(
            checkpoint, out=out, images=images, parity_images=4, quantize="int8",
            calibration_dir=images, calibration_images=4,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # no bundle, no temporary folder


def test_bad_int8_options_are_one_line(checkpoint: Path, tmp_path: Path, capsys) -> None:
    from tests.conftest import compose_cfg
    from trainer.tasks.export import export
    from trainer.utils.entry import run_reporting_errors

    with pytest.raises(ExportError, match="^quantize: 'fp16' is not supported; give quantize=int8"):
        export_bundle(checkpoint, out=tmp_path / "b", quantize="fp16")
    with pytest.raises(ExportError, match="^calibration_dir: calibrates int8 only"):
        export_bundle(checkpoint, out=tmp_path / "b", calibration_dir=tmp_path)
    images = split_images(checkpoint.parents[2])[0].parent
    with pytest.raises(ExportError, match="^calibration_dir: '.*none' is not a folder of images"):
        export_bundle(
            checkpoint, out=tmp_path / "b", images=images, quantize="int8",
            calibration_dir=tmp_path / "none",
        )  # fmt: skip

    class Refuses:  # score.py's InputError is a ValueError
        def preprocess(self, data: bytes, name: str) -> np.ndarray:
            raise ValueError(f"image '{name}' has mode L; this model accepts RGB")

    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "a.png").write_bytes(b"x")
    with pytest.raises(ExportError, match="^calibration_dir: image 'a.png' has mode L"):
        next(
            quantize.calibration_batches(Refuses(), [tmp_path / "cal" / "a.png"], "calibration_dir")
        )
    with pytest.raises(SystemExit) as info:  # what scripts/export.py does with the error
        cfg = compose_cfg(["ckpt_path=c.ckpt", "quantize=fp16"], tmp_path, config_name="export")
        run_reporting_errors(export, cfg)
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: quantize: 'fp16' is not supported; give quantize=int8, or null for float32"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal"]  # no bundle, no run folder
