"""An anomaly bundle's server as a real process, over real HTTP: scores, ``?map=true``, refusals."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import Image

from tests.helpers.export_fixtures import encoded, load_score_module, split_images
from tests.helpers.servers import Server, running_server
from trainer.export.schema import subschema


@pytest.fixture(scope="module")
def anomaly_server(
    anomaly_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("anomaly_server") / "server.log"
    with running_server(anomaly_bundle, log) as running:
        yield running


def test_metadata_says_anomaly(anomaly_server: Server, anomaly_bundle: Path) -> None:
    meta = httpx.get(f"{anomaly_server.url}/metadata").json()
    assert meta["kind"] == "anomaly" and meta["anomaly"]["method"] == "patchcore"
    assert [o["name"] for o in meta["outputs"]] == ["anomaly_score", "anomaly_map"]
    schema = json.loads((anomaly_bundle / "schema.json").read_text())
    assert meta["operating_point"] == schema["x-model"]["operating_point"]


def test_predict_answers_maps_when_asked(anomaly_server: Server, anomaly_bundle: Path) -> None:
    schema = json.loads((anomaly_bundle / "schema.json").read_text())
    files = split_images(anomaly_bundle.parents[1])[:3]
    multipart = [("file", (f.name, f.read_bytes(), "image/png")) for f in files]
    url = f"{anomaly_server.url}/predict"
    plain, mapped = httpx.post(url, files=multipart), httpx.post(f"{url}?map=true", files=multipart)
    assert plain.status_code == mapped.status_code == 200, mapped.text
    for answer in (plain.json(), mapped.json()):
        jsonschema.validate(answer, subschema(schema, "response"))
    # the same answers as the bundle's score.py in this process
    scorer = load_score_module(anomaly_bundle).Model(anomaly_bundle)
    images = [(f.name, f.read_bytes()) for f in files]
    assert mapped.json() == json.loads(json.dumps(scorer.predict(images, map=True)))
    assert plain.json() == json.loads(json.dumps(scorer.predict(images)))
    assert all("map" not in p for p in plain.json()["predictions"])
    for p in mapped.json()["predictions"]:
        with Image.open(io.BytesIO(base64.b64decode(p["map"]["png"]))) as img:
            assert img.size == (64, 64) and img.mode == "L"

    request = {
        "images": [{"name": "j", "data": base64.b64encode(files[1].read_bytes()).decode()}],
        "map": True,
    }
    by_json = httpx.post(url, json=request)
    assert by_json.status_code == 200
    assert by_json.json()["predictions"][0] == {**mapped.json()["predictions"][1], "name": "j"}


def test_bad_requests_are_named_4xx(anomaly_server: Server, anomaly_bundle: Path) -> None:
    """The data contract (64 px RGB boards) and the map option, refused in one line each."""
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    good = split_images(anomaly_bundle.parents[1])[0].read_bytes()

    def one(name: str, data: bytes) -> dict:
        return {"files": [("file", (name, data, "application/octet-stream"))]}

    cases = [
        ("grey board", "", one("grey.png", encoded(rgb, "L")), 422, "unsupported_mode"),
        ("80 px board", "", one("80.png", encoded(rgb.repeat(2, 0)[:80, :80])), 422,
         "size_out_of_range"),
        ("map=maybe", "?map=maybe", one("a.png", good), 400, "bad_request"),
        ("JSON map not a bool", "", {"json": {"images": [{"data": base64.b64encode(good)
         .decode()}], "map": "yes"}}, 400, "bad_request"),
    ]  # fmt: skip
    for case, query, kwargs, status, code in cases:
        answer = httpx.post(f"{anomaly_server.url}/predict{query}", **kwargs)
        assert answer.status_code == status, (case, answer.text)
        error = answer.json()["error"]
        assert error["code"] == code and len(error["message"].splitlines()) == 1, (case, error)
    assert "Traceback" not in anomaly_server.log.read_text()
