"""The server as a real process on a free loopback port, called over real HTTP."""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest

from tests.conftest import ROOT
from tests.helpers.export_fixtures import ISOLATE, LIMITS, encoded, site_dirs, split_images
from tests.helpers.servers import Server, free_port, running_server
from trainer.export.schema import subschema


@pytest.fixture(scope="module")
def server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(bundle, tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running


def test_health_and_schema(server: Server, bundle: Path) -> None:
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    assert httpx.get(f"{server.url}/schema").json() == json.loads(
        (bundle / "schema.json").read_text()
    )
    assert "Uvicorn running on http://127.0.0.1:" in server.log.read_text()  # loopback default


# A Unix absolute path at the start of a string or after a space, quote, '=', '(', ':' or ',';
# or a Windows drive or UNC path.
ABSOLUTE = re.compile(r"""(^|[\s'"=(:,])/[^/\s]+|\b[A-Za-z]:[\\/]|\\\\""")


def strings(value: Any) -> Iterator[str]:
    """Every key and string value of a JSON document, however deep."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_metadata_serves_what_a_client_needs_and_no_build_paths(
    server: Server, bundle: Path
) -> None:
    meta = httpx.get(f"{server.url}/metadata").json()
    schema = json.loads((bundle / "schema.json").read_text())
    assert meta["class_names"] == schema["x-model"]["class_names"]
    assert meta["preprocessing"] == schema["x-model"]["preprocessing"]
    assert meta["operating_point"] == schema["x-model"]["operating_point"]
    assert meta["input"]["dtype"] == "uint8" and meta["backbone"] == schema["x-model"]["backbone"]
    assert {**meta["limits"], **schema["x-limits"]} == meta["limits"]
    assert meta["limits"]["max_inflight_bytes"] >= meta["limits"]["max_json_bytes"]
    assert meta["runtime"]["onnxruntime"] and meta["runtime"]["python"].startswith("3.")

    manifest_path = bundle / "manifest.json"
    assert meta["model"]["sha256"] == sha256(bundle / "model.onnx")
    assert meta["bundle"]["sha256"] == sha256(manifest_path)
    files = sorted(p for p in bundle.iterdir() if p.is_file() and p.name != "manifest.json")
    assert sorted(meta["bundle"]["files"]) == [p.name for p in files]
    for path in files:
        assert meta["bundle"]["files"][path.name]["sha256"] == sha256(path), path.name

    manifest = json.loads(manifest_path.read_text())
    private = [
        manifest["checkpoint"]["path"],
        manifest["data"]["root"],
        manifest["lineage"]["command"],
        str(bundle.parent),
    ]
    assert all(private), private  # the manifest does hold them: the test means something
    words = [re.compile(rf"\b{re.escape(w)}\b") for w in (socket.gethostname(), getpass.getuser())]
    for text in strings(meta):
        assert not ABSOLUTE.search(text), text
        assert not any(p in text for p in private), text
        assert not any(w.search(text) for w in words), text


def test_predicts_multipart_raw_and_json(server: Server, bundle: Path) -> None:
    schema = json.loads((bundle / "schema.json").read_text())
    files = split_images(bundle.parent)[:3]
    answer = httpx.post(
        f"{server.url}/predict",
        files=[("file", (f.name, f.read_bytes(), "image/png")) for f in files],
    )
    assert answer.status_code == 200, answer.text
    jsonschema.validate(answer.json(), subschema(schema, "response"))
    assert [p["name"] for p in answer.json()["predictions"]] == [f.name for f in files]

    raw = httpx.post(
        f"{server.url}/predict?name=one.png",
        content=files[0].read_bytes(),
        headers={"content-type": "image/png"},
    )
    assert raw.status_code == 200 and raw.json()["predictions"][0]["name"] == "one.png"
    assert raw.json()["predictions"][0] == {**answer.json()["predictions"][0], "name": "one.png"}

    request = {"images": [{"name": "j", "data": base64.b64encode(files[1].read_bytes()).decode()}]}
    by_json = httpx.post(f"{server.url}/predict", json=request)
    assert by_json.status_code == 200
    assert by_json.json()["predictions"][0]["label"] == answer.json()["predictions"][1]["label"]


FIELD_ONLY = b'--b0\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b0--\r\n'


def bad_requests(bundle: Path) -> list[tuple[str, dict, int, str]]:
    """(case, httpx.post keyword arguments, status, error code)."""
    good = split_images(bundle.parent)[0].read_bytes()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def one(name: str, data: bytes) -> dict:
        return {"files": [("file", (name, data, "application/octet-stream"))]}

    return [
        ("text, not an image", one("notes.png", b"hello, I am text"), 415, "not_an_image"),
        ("truncated PNG", one("cut.png", good[: len(good) // 2]), 422, "truncated_image"),
        ("over the size limit", one("big.png", rng.bytes(LIMITS["max_bytes"] + 10)), 413,
         "file_too_large"),
        ("too many images", {"files": [("f", (f"{i}.png", good, "image/png")) for i in range(5)]},
         413, "too_many_images"),
        ("CMYK mode", one("cmyk.jpg", encoded(rgb, "CMYK", "JPEG")), 422, "unsupported_mode"),
        ("grey mode", one("grey.png", encoded(rgb, "L")), 422, "unsupported_mode"),
        ("decompression bomb", one("bomb.png", encoded(np.zeros((1000, 1000, 3), np.uint8))),
         413, "too_many_pixels"),
        ("over max_pixels", one("wide.png", encoded(np.zeros((300, 300, 3), np.uint8))), 413,
         "too_many_pixels"),
        ("size outside the contract", one("80.png", encoded(rgb.repeat(2, 0)[:80, :80])), 422,
         "size_out_of_range"),
        ("GIF is not accepted", one("a.gif", encoded(rgb, "P", "GIF")), 415, "not_an_image"),
        ("empty body", {"content": b"", "headers": {"content-type": "image/png"}}, 400,
         "no_images"),
        ("empty file", one("zero.png", b""), 400, "empty_file"),
        ("multipart without files", {"content": FIELD_ONLY, "headers": {"content-type":
         "multipart/form-data; boundary=b0"}}, 400, "no_images"),
        ("broken multipart", {"content": b"--zz\r\nnonsense", "headers": {"content-type":
         "multipart/form-data; boundary=b0"}}, 400, "bad_request"),
        ("unknown content type", {"content": b"x", "headers": {"content-type": "text/plain"}},
         415, "unsupported_media_type"),
        ("JSON that is not base64", {"json": {"images": [{"data": "***"}]}}, 400, "bad_request"),
        ("JSON without images", {"json": {"pictures": []}}, 400, "bad_request"),
        ("JSON that is not UTF-8", {"content": b"\xff\xfe{}", "headers": {"content-type":
         "application/json"}}, 400, "bad_request"),
        ("JSON without a length", {"content": iter([b"{}"]), "headers": {"content-type":
         "application/json"}}, 411, "length_required"),
        ("raw body over the size limit", {"content": rng.bytes(LIMITS["max_bytes"] + 10),
         "headers": {"content-type": "image/png"}}, 413, "file_too_large"),
    ]  # fmt: skip


def test_every_bad_request_is_a_named_4xx(server: Server, bundle: Path) -> None:
    for case, kwargs, status, code in bad_requests(bundle):
        answer = httpx.post(f"{server.url}/predict", **kwargs)
        assert answer.status_code == status, (case, answer.status_code, answer.text)
        error = answer.json()["error"]
        assert error["code"] == code and error["message"], (case, error)
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert server.process.poll() is None
    assert "Traceback" not in server.log.read_text()


def test_bad_bundle_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trainer.serve", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "is not an export bundle" in result.stderr and "Traceback" not in result.stderr


def test_bundle_server_py_runs_without_trainer_or_torch(bundle: Path) -> None:
    """The container's command, ``python server.py``, with only the bundle's requirements."""
    port = free_port()
    script = ISOLATE + "import runpy; runpy.run_path('server.py', run_name='__main__')"
    argv = [json.dumps([str(bundle), *site_dirs()]), "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-B", "-c", script, *argv],
        cwd=bundle,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read()[-2000:]
                time.sleep(0.2)
        image = split_images(bundle.parent)[0]
        answer = httpx.post(f"{url}/predict", files={"f": (image.name, image.read_bytes())})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["name"] == image.name
    finally:
        process.terminate()
        process.wait(timeout=30)
