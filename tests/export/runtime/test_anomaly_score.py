"""score.py on an anomaly bundle: scores, pass/fail, the map as a PNG with its box, the CSV."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from tests.helpers.anomaly_fixtures import torch_scores
from tests.helpers.export_fixtures import ISOLATE, load_score_module, site_dirs, split_images
from tests.helpers.predict_fixtures import boards_folder
from trainer.checkpoint.read import load_model
from trainer.export.anomaly_parity import RTOL
from trainer.export.runtime import score as score_template
from trainer.export.schema import subschema


def png(answer: dict) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(answer["png"]))) as img:
        assert img.format == "PNG" and img.mode == "L"
        return np.asarray(img)


def test_map_png_and_box_by_hand() -> None:
    amap = np.zeros((8, 8), np.float32)
    amap[2:4, 5:7] = 1.0  # the region around the peak: rows 2-3, columns 5-6
    amap[3, 6] = 2.0  # the peak
    amap[7, 0] = 1.5  # above the level (1.0) but not connected to the peak
    amap[4, 7] = 1.2  # touches the region only diagonally: not 4-connected
    answer = score_template.anomaly_map(amap, (100, 50), threshold=0.5)  # image 100 x 50
    # columns 5..6 of 8 over 100 px: [62.5, 87.5) -> [62, 88); rows 2..3 of 8 over 50: [12, 25)
    assert answer["box"] == [62, 12, 88, 25]
    assert answer["peak"] == [81, 21]  # the peak pixel's centre: (6.5 * 100 / 8, 3.5 * 50 / 8)
    assert answer["scale"] == 2.0 and answer["max"] == 2.0  # max(2 * 0.5, 2.0)
    grey = {2.0: 255, 1.5: 191, 1.2: 153, 1.0: 128, 0.0: 0}  # round(255 * v / 2)
    assert np.array_equal(png(answer), np.vectorize(lambda v: grey[round(float(v), 1)])(amap))
    assert (answer["width"], answer["height"]) == (8, 8)
    high = score_template.anomaly_map(amap, (8, 8), threshold=3.0)
    assert high["scale"] == 6.0 and png(high).max() == 85  # 255 * 2 / 6: below grey 128
    assert score_template.anomaly_map(amap, (8, 8), threshold=None)["scale"] == 2.0


def request_of(files: list[Path], **extra: object) -> dict:
    images = [{"name": f.name, "data": base64.b64encode(f.read_bytes()).decode()} for f in files]
    return {"images": images, **extra}


def test_run_answers_scores_decisions_and_maps(
    anomaly_bundle: Path, anomaly_checkpoint: Path
) -> None:
    scorer = load_score_module(anomaly_bundle).Model(anomaly_bundle)
    schema = json.loads((anomaly_bundle / "schema.json").read_text())
    files = split_images(anomaly_bundle.parents[1])
    want, _ = torch_scores(load_model(anomaly_checkpoint), files)
    chosen = np.argsort(want)[[0, 1, -2, -1]]  # two pass, two fail (the request limit is 4)
    files, want = [files[i] for i in chosen], want[chosen]
    threshold = scorer.operating_point["threshold"]

    plain = scorer.run(request_of(files))
    jsonschema.validate(plain, subschema(schema, "response"))
    got = np.array([p["anomaly_score"] for p in plain["predictions"]])
    assert np.abs(got - want).max() <= RTOL * want.min()
    assert [p["pass"] for p in plain["predictions"]] == list(want < np.float32(threshold))
    assert {p["pass"] for p in plain["predictions"]} == {True, False}
    assert all("map" not in p and p["threshold"] == threshold for p in plain["predictions"])

    mapped = scorer.run(request_of(files, map=True))
    assert mapped == scorer.run(request_of(files), map=True)
    jsonschema.validate(mapped, subschema(schema, "response"))
    batch = np.stack([scorer.preprocess(f.read_bytes()) for f in files])
    _, maps = scorer.session.run(None, {"image": batch})  # the graph's own maps
    for answer, amap in zip(mapped["predictions"], maps[:, 0], strict=True):
        m = answer["map"]
        scale = max(2 * threshold, float(amap.max()))
        assert m["scale"] == pytest.approx(scale)
        assert np.array_equal(png(m), np.clip(np.rint(amap * (255 / scale)), 0, 255))
        left, top, right, bottom = m["box"]
        x, y = m["peak"]
        assert 0 <= left <= x < right <= 64 and 0 <= top <= y < bottom <= 64  # 64 px boards
        assert amap[y, x] == amap.max()
        bad = {**m, "box": [0, 0, 64]}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema["$defs"]["anomaly_map"])

    with pytest.raises(ValueError, match="'map' must be true or false") as err:  # InputError
        scorer.run(request_of(files[:1], map="yes"))
    assert err.value.code == "bad_request" and err.value.status == 400


def test_a_classifier_has_no_map(bundle: Path) -> None:
    scorer = load_score_module(bundle).Model(bundle)
    with pytest.raises(ValueError, match="only an anomaly model") as err:  # score.InputError
        scorer.run(request_of(split_images(bundle.parent)[:1]), map=True)
    assert err.value.code == "bad_request" and err.value.status == 400


SCRIPT = (
    ISOLATE
    + "import runpy; sys.argv[0] = 'score.py'; runpy.run_path('score.py', run_name='__main__')"
)


def test_cli_writes_the_anomaly_columns(
    anomaly_bundle: Path, anomaly_checkpoint: Path, tmp_path: Path
) -> None:
    """``python score.py DIR`` where torch and this project cannot be imported."""
    folder = tmp_path / "boards"
    copies = sorted(boards_folder(anomaly_bundle.parents[1], folder))
    paths = json.dumps([str(anomaly_bundle), *site_dirs()])
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", SCRIPT, paths, str(folder)],
        cwd=anomaly_bundle,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == ["score.py: scored 16 of 17 images"]
    rows = {Path(r["path"]): r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert result.stdout.splitlines()[0] == "path,anomaly_score,pass,error"
    broken = rows.pop(folder / "broken_0.png")
    assert "truncated" in broken["error"] and broken["anomaly_score"] == broken["pass"] == ""
    assert sorted(rows) == copies and not any(r["error"] for r in rows.values())
    want, _ = torch_scores(load_model(anomaly_checkpoint), copies)
    got = np.array([float(rows[f]["anomaly_score"]) for f in copies])
    assert np.abs(got - want).max() <= RTOL * want.min()
    threshold = load_score_module(anomaly_bundle).Model(anomaly_bundle).operating_point["threshold"]
    verdicts = [rows[f]["pass"] for f in copies]
    assert verdicts == ["true" if s < np.float32(threshold) else "false" for s in want]
    assert verdicts.count("true") == 8


def test_without_a_threshold_scores_have_no_verdict(anomaly_bundle: Path, tmp_path: Path) -> None:
    """A checkpoint without an operating point: scores and maps, ``pass`` and ``threshold`` null."""
    from trainer.export.schema import operating_point_from

    meta = {"kind": "anomaly", "anomaly": {"good_class": "good"}, "class_names": ["good", "x"]}
    op = operating_point_from(meta)
    assert op["rule"] == "none" and op["threshold"] is None
    for name in ("model.onnx", "schema.json", "score.py"):
        (tmp_path / name).write_bytes((anomaly_bundle / name).read_bytes())
    schema = json.loads((tmp_path / "schema.json").read_text())
    schema["x-model"]["operating_point"] = op
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    answer = (
        load_score_module(tmp_path)
        .Model(tmp_path)
        .run(request_of(split_images(anomaly_bundle.parents[1])[:2]), map=True)
    )
    jsonschema.validate(answer, subschema(schema, "response"))
    for p in answer["predictions"]:
        assert p["pass"] is None and p["threshold"] is None
        assert p["map"]["scale"] == p["map"]["max"] and png(p["map"]).max() == 255
