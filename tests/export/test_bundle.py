"""The bundle: its files, manifest, schema, ONNX and torch.export forms, and refusals."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.helpers.export_fixtures import LIMITS, load_score_module, split_images
from trainer.checkpoint.read import load_classifier
from trainer.data.dataset import load_image
from trainer.errors import ConfigError
from trainer.export import ExportError
from trainer.export.bundle import export_bundle
from trainer.export.schema import ANY_SIDE, operating_point_from, subschema

FILES = {
    "model.onnx",
    "model.pt2",
    "schema.json",
    "score.py",
    "server.py",
    "requirements.txt",
    "Dockerfile",
    "model_card.md",
    "manifest.json",
}


def score_module(bundle: Path) -> Any:
    return load_score_module(bundle)


def test_bundle_holds_every_file_with_its_sha256(bundle: Path) -> None:
    assert {p.name for p in bundle.iterdir()} == FILES
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["files"]) == FILES - {"manifest.json"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == entry["sha256"], name
    assert manifest["onnx_opset"] == 20 and len(manifest["checkpoint"]["sha256"]) == 64
    assert manifest["parity"]["score.py"]["labels_identical"]
    assert manifest["parity"]["pixel_max_abs_diff"] == 0
    assert (bundle / "model_card.md").read_text() == "# Tiny model\n"
    requirements = (bundle / "requirements.txt").read_text()
    assert all(f"{p}==" in requirements for p in ("onnxruntime", "numpy", "pillow", "fastapi"))
    assert "torch" not in requirements
    docker = (bundle / "Dockerfile").read_text()
    assert "-slim" in docker and "USER scorer" in docker and "HEALTHCHECK" in docker


def _is_pickle(data: bytes) -> bool:
    """A pickle of protocol 2-5: PROTO opcode, version, ..., STOP. (Raw float32 weights may
    begin with the byte 0x80 by chance; all three together they do not.)"""
    return len(data) > 2 and data[0] == 0x80 and 2 <= data[1] <= 5 and data.endswith(b".")


def test_bundle_holds_no_pickle(bundle: Path) -> None:
    assert _is_pickle(pickle.dumps({"a": 1})) and not _is_pickle(b"\x80\x3f\x00\x00")
    with zipfile.ZipFile(bundle / "model.pt2") as archive:
        for name in archive.namelist():
            data = archive.read(name)
            assert not name.endswith((".pkl", ".pickle")), name
            assert not _is_pickle(data), f"{name} looks like a pickle"
            if name.endswith("weights_config.json"):
                assert '"use_pickle": true' not in data.decode()
    for path in bundle.iterdir():
        assert not _is_pickle(path.read_bytes()), path


def test_schema_is_valid_and_describes_requests_and_answers(bundle: Path) -> None:
    schema = json.loads((bundle / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["x-model"]["class_names"][0] == "good"
    assert schema["x-model"]["input"]["dtype"] == "uint8"
    assert schema["x-limits"]["max_images"] == LIMITS["max_images"]
    assert schema["x-limits"]["modes"] == ["RGB"]  # from the checkpoint's data contract
    assert schema["x-limits"]["width"] == [64, 64]
    data = base64.b64encode(split_images(bundle.parent)[0].read_bytes()).decode()
    request = {"images": [{"name": "a.png", "data": data}]}
    jsonschema.validate(request, subschema(schema, "request"))
    response = score_module(bundle).Model(bundle).run(request)
    jsonschema.validate(response, subschema(schema, "response"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"images": [{"data": data}] * 5}, subschema(schema, "request"))
    response["predictions"][0]["label"] = "unknown_class"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(response, subschema(schema, "response"))


def test_onnx_agrees_with_the_checkpoint(bundle: Path, checkpoint: Path) -> None:
    model = load_classifier(checkpoint)
    meta = model.run_metadata
    graph = onnx.load(str(bundle / "model.onnx"))
    assert graph.opset_import[0].version == 20
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    session = ort.InferenceSession(str(bundle / "model.onnx"))
    files = split_images(bundle.parent)
    images = torch.stack(
        [load_image(f, meta["preprocessing"]["resize"], "bilinear") for f in files]
    )
    with torch.no_grad():
        expected = model(model.normalize(images)).softmax(-1).numpy()
    for batch in (1, 3, len(files)):  # the dynamic batch axis
        got = session.run(["probabilities"], {"image": images[:batch].numpy()})[0]
        np.testing.assert_allclose(got, expected[:batch], atol=1e-4)
        assert (got.argmax(1) == expected[:batch].argmax(1)).all()
    program = torch.export.load(str(bundle / "model.pt2")).module()
    np.testing.assert_allclose(program(images)[1].detach().numpy(), expected, atol=1e-5)


def test_operating_point_decides_pass_and_fail(bundle: Path, tmp_path: Path) -> None:
    meta = {"class_names": ["good", "bad"], "backbone": "x"}
    assert operating_point_from(meta)["rule"] == "argmax"
    op = operating_point_from({**meta, "operating_point": {"threshold": 0.3, "good_class": "good"}})
    assert op["rule"] == "threshold" and op["threshold"] == 0.3
    copy = tmp_path / "b"
    copy.mkdir()
    for name in ("model.onnx", "schema.json", "score.py"):
        (copy / name).write_bytes((bundle / name).read_bytes())
    schema = json.loads((copy / "schema.json").read_text())
    schema["x-model"]["operating_point"] = {**op, "good_class": "good"}
    (copy / "schema.json").write_text(json.dumps(schema))
    scorer = score_module(copy).Model(copy)
    probs = np.array([0.75, 0.25, 0.0, 0.0])  # defect score 0.25 < 0.3: pass
    assert scorer.decide(probs) == (pytest.approx(0.25), True)
    assert scorer.decide(np.array([0.6, 0.4, 0.0, 0.0]))[1] is False  # argmax good, still fails


def test_refuses_an_existing_folder_unless_forced(bundle: Path, checkpoint: Path) -> None:
    with pytest.raises(ExportError, match="already exists"):
        export_bundle(checkpoint, out=bundle)
    with pytest.raises(ExportError, match="not a bundle"):
        export_bundle(checkpoint, out=checkpoint.parent, force=True)


def test_refuses_a_bundle_that_disagrees(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    from trainer.export import onnx_export

    real = onnx_export.export_onnx

    def tampered(module, size, path):
        module = copy.deepcopy(module)  # the ONNX file gets other weights than the checkpoint's
        with torch.no_grad():
            module.net.get_classifier().bias += torch.arange(4.0)
        return real(module, size, path)

    monkeypatch.setattr(onnx_export, "export_onnx", tampered)
    out = tmp_path / "bad"
    images = split_images(checkpoint.parents[2])[0].parent
    with pytest.raises(ExportError, match="parity"):
        export_bundle(checkpoint, out=out, images=images, parity_images=4)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no bundle, no leftovers


def test_parity_refuses_pass_fail_decisions_that_differ(checkpoint: Path) -> None:
    """An image on the threshold is decided by the last bits of its score: a bundle whose
    probabilities are well within ``atol`` but move it across must not be written."""
    from trainer.export.parity import check_parity

    model = load_classifier(checkpoint)
    files = split_images(checkpoint.parents[2])[:4]
    pre = model.preprocessing
    images = torch.stack([load_image(f, pre["resize"], pre["interpolation"]) for f in files])
    with torch.no_grad():
        reference = model(model.normalize(images)).softmax(-1).numpy()
    good = model.class_names.index("good")
    on_it = float(np.float32(1) - np.float32(reference[0, good]))  # image 0: exactly on it

    class Scorer:  # score.py's interface; its answers ``nudge`` off the checkpoint's
        class_names = model.class_names
        operating_point = {"rule": "threshold", "threshold": on_it, "good_class": "good"}

        def __init__(self, nudge: float) -> None:
            self.nudge = nudge

        def preprocess(self, data: bytes, name: str) -> np.ndarray:
            return images[[f.name for f in files].index(name)].numpy()

        def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
            probs = reference.copy()
            probs[0, good] += self.nudge  # image 0 a hair more "good": its score drops below
            probs[0, 1 - good if good < 2 else 0] -= self.nudge
            return probs

        def decide(self, probs: np.ndarray) -> tuple[float, bool]:  # score.py's rule
            score = np.float32(1) - np.float32(probs[good])
            return float(score), bool(score < np.float32(self.operating_point["threshold"]))

    report = check_parity(model, Scorer(0.0), files)
    assert report["score.py"]["pass_fail_differ"] == 0 and report["closest_to_threshold"] == 0
    with pytest.raises(ExportError, match="pass/fail decisions that differ: 1"):
        check_parity(model, Scorer(1e-6), files)  # 100 times below atol


def run_export(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    script = str(Path(__file__).parents[2] / "scripts" / "export.py")
    return subprocess.run(
        [sys.executable, script, *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_reports_a_missing_checkpoint_in_one_line(tmp_path: Path) -> None:
    for bad, needles in [
        ([f"ckpt_path={tmp_path / 'none.ckpt'}"], ["none.ckpt", "does not exist"]),
        (["ckpt_path=x", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["ckpt_path=x", "bogus=1"], ["bogus"]),
        (["ckpt_path=x", "max_images=many"], ["max_images: 'many' is not a positive integer"]),
        ([], ["ckpt_path: required"]),
    ]:
        result = run_export(*bad, cwd=tmp_path)
        assert result.returncode == 2, (bad, result.stderr)
        assert all(n in result.stderr for n in needles) and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []  # no run folder, no log file


def test_cli_writes_a_bundle(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    images = split_images(checkpoint.parents[2])[0].parent
    result = run_export(
        f"ckpt_path={checkpoint}",
        f"out={out}",
        f"images={images}",
        "parity_images=4",
        "max_images=3",
        "any_size=true",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Bundle: {out}" in result.stdout and "python -m trainer.serve" in result.stdout
    limits = json.loads((out / "schema.json").read_text())["x-limits"]
    assert limits["max_images"] == 3 and limits["width"] == limits["height"] == ANY_SIDE
    assert json.loads((out / "manifest.json").read_text())["parity"]["images"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # the bundle, nothing else


def test_every_config_key_reaches_export_bundle(tmp_path: Path, monkeypatch) -> None:
    from tests.conftest import compose_cfg
    from trainer.export import bundle
    from trainer.tasks.export import export

    seen: dict = {}
    monkeypatch.setattr(bundle, "export_bundle", lambda ckpt, **kw: seen.update(kw, ckpt=ckpt))
    keys = ["out=o", "images=i", "force=true", "parity_images=5", "max_images=3"]
    keys += ["max_bytes=1000", "max_pixels=400", "any_size=true"]
    keys += ["quantize=int8", "calibration_dir=cal", "calibration_images=9"]
    export(compose_cfg(["ckpt_path=c.ckpt", *keys], tmp_path, config_name="export"))
    assert seen == {
        "ckpt": "c.ckpt",
        "out": "o",
        "images": "i",
        "force": True,
        "parity_images": 5,
        "quantize": "int8",
        "calibration_dir": "cal",
        "calibration_images": 9,
        "max_images": 3,
        "max_bytes": 1000,
        "max_pixels": 400,
        "width": ANY_SIDE,
        "height": ANY_SIDE,
    }
    export(compose_cfg(["ckpt_path=c.ckpt"], tmp_path, config_name="export"))
    assert (seen["force"], seen["parity_images"], seen["max_images"], seen["width"]) == (
        False,
        32,
        None,
        None,
    )
    int8_keys = (seen["quantize"], seen["calibration_dir"], seen["calibration_images"])
    assert int8_keys == (None, None, 64)
    with pytest.raises(ConfigError, match="^force: 'yes' is not true or false"):
        export(compose_cfg(["ckpt_path=c.ckpt", "force=yes"], tmp_path, config_name="export"))


def test_score_py_refuses_a_model_that_differs_from_the_manifest(bundle: Path, tmp_path) -> None:
    for name in ("model.onnx", "schema.json", "score.py", "manifest.json"):
        (tmp_path / name).write_bytes((bundle / name).read_bytes())
    score = score_module(tmp_path)
    score.Model(tmp_path)  # intact: loads
    with (tmp_path / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(RuntimeError, match="sha256"):
        score.Model(tmp_path)
