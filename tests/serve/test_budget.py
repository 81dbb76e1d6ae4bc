"""The byte budget of request bodies in flight, and the body timeout, against a real server.

The server here has a budget of ``BUDGET`` bytes (about 1.6 of the test bundle's largest JSON
request) and a body timeout of ``TIMEOUT`` seconds, so that every case takes a second or two.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jsonschema
import pytest

from tests.conftest import ROOT
from tests.helpers.export_fixtures import split_images
from tests.helpers.servers import Server, running_server
from trainer.export.runtime.server import BodyBudget, Overloaded
from trainer.export.schema import subschema

BUDGET = 700_000
TIMEOUT = 1.5


@pytest.fixture(scope="module")
def tight(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("tight") / "server.log"
    args = ["--max-inflight-bytes", str(BUDGET), "--body-timeout", str(TIMEOUT)]
    with running_server(bundle, log, *args) as running:
        yield running


def error_schema(bundle: Path) -> dict:
    return subschema(json.loads((bundle / "schema.json").read_text()), "error")


def inflight(server: Server) -> int:
    return httpx.get(f"{server.url}/health").json()["inflight_bytes"]


def wait_inflight(server: Server, expected: int, within: float = 3.0) -> float:
    """Seconds until ``/health`` reports ``expected`` bytes in flight (fails past ``within``)."""
    start = time.monotonic()
    while (held := inflight(server)) != expected:
        assert time.monotonic() - start < within, f"{held} bytes in flight, not {expected}"
        time.sleep(0.05)
    return time.monotonic() - start


def declare(server: Server, length: int, ctype: str = "application/json", body: bytes = b""):
    """A raw connection that announces ``length`` bytes of body and sends only ``body``."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of the one response on ``sock``, read within ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {k.lower(): v for k, v in headers.items()}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(body)


def padded_request(image: bytes, size: int) -> bytes:
    """A valid JSON request of exactly ``size`` bytes (an extra key pads it)."""
    request = {"images": [{"name": "a.png", "data": base64.b64encode(image).decode()}], "pad": ""}
    empty = len(json.dumps(request).encode())
    request["pad"] = "x" * (size - empty)
    body = json.dumps(request).encode()
    assert len(body) == size
    return body


def test_budget_counts_and_refuses_without_taking() -> None:
    budget = BodyBudget(100)
    with budget.hold() as one, budget.hold() as two:
        one.cover(60)
        one.cover(50)  # already held
        assert budget.used == 60
        with pytest.raises(Overloaded) as err:
            two.cover(41)
        assert (err.value.total, err.value.used, err.value.capacity) == (41, 60, 100)
        assert budget.used == 60 and two.bytes == 0
        two.cover(40)
        assert budget.used == 100
    assert budget.used == 0
    with pytest.raises(RuntimeError), budget.hold() as three:
        three.cover(10)
        raise RuntimeError("the request failed")
    assert budget.used == 0


def test_concurrent_large_requests_beyond_the_budget(tight: Server, bundle: Path) -> None:
    image = split_images(bundle.parent)[0].read_bytes()
    expected = httpx.post(f"{tight.url}/predict", files={"f": ("a.png", image)}).json()
    body = padded_request(image, 300_000)  # two fit in the budget, three do not

    def slow() -> Iterator[bytes]:
        yield body[:100_000]
        time.sleep(0.6)  # every request is in flight at once
        yield body[100_000:]

    def post(_: int) -> httpx.Response:
        headers = {"content-type": "application/json", "content-length": str(len(body))}
        return httpx.post(f"{tight.url}/predict", content=slow(), headers=headers, timeout=20)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    for a in answers:
        if a.status_code == 503:
            assert a.headers["retry-after"].isdigit()
            assert a.json()["error"]["code"] == "overloaded" and a.json()["error"]["message"]
            jsonschema.validate(a.json(), error_schema(bundle))  # what /schema promises
        else:
            assert a.json()["predictions"][0]["label"] == expected["predictions"][0]["label"]
    wait_inflight(tight, 0)
    again = httpx.post(f"{tight.url}/predict", files={"f": ("a.png", image)})
    assert again.status_code == 200 and httpx.get(f"{tight.url}/health").status_code == 200
    assert tight.process.poll() is None and "Traceback" not in tight.log.read_text()


def test_a_client_that_stalls_or_leaves_gives_its_bytes_back(tight: Server) -> None:
    limit = httpx.get(f"{tight.url}/metadata").json()["limits"]["max_json_bytes"]
    with declare(tight, 10**12) as huge:  # over the per-request limit: 413 at once
        status, _, error = answer(huge, timeout=1)
        assert status == 413 and error["error"]["code"] == "request_too_large"

    staller = declare(tight, limit, body=b'{"ima')
    try:
        wait_inflight(tight, limit)
        start = time.monotonic()
        with declare(tight, limit) as second:  # does not fit beside it: 503 before any body
            status, headers, error = answer(second, timeout=1)
        assert status == 503 and headers["retry-after"].isdigit(), (status, headers)
        assert error["error"]["code"] == "overloaded" and time.monotonic() - start < 1
        status, headers, error = answer(staller, timeout=TIMEOUT + 3)
        assert status == 408 and error["error"]["code"] == "body_timeout"
        jsonschema.validate(error, subschema(httpx.get(f"{tight.url}/schema").json(), "error"))
        assert headers.get("connection") == "close"
    finally:
        staller.close()
    wait_inflight(tight, 0)

    start = time.monotonic()
    leaver = declare(tight, 300_000, body=b"x" * 1000)
    wait_inflight(tight, 300_000)
    leaver.close()
    wait_inflight(tight, 0)
    assert time.monotonic() - start < TIMEOUT, "released by the timeout, not by the disconnect"
    assert tight.process.poll() is None and "Traceback" not in tight.log.read_text()


def test_chunked_upload_is_cut_off_at_the_budget(tight: Server) -> None:
    limit = httpx.get(f"{tight.url}/metadata").json()["limits"]["max_json_bytes"]
    left = 20_000
    holders = [declare(tight, limit), declare(tight, BUDGET - limit - left)]
    sent = threading.Event()

    def chunks(total: int) -> Iterator[bytes]:
        for _ in range(total // 10_000):
            yield b"\x00" * 10_000
        sent.set()

    try:
        wait_inflight(tight, BUDGET - left)
        headers = {"content-type": "image/png"}  # no Content-Length: chunked
        cut = httpx.post(f"{tight.url}/predict", content=chunks(60_000), headers=headers)
        assert cut.status_code == 503, cut.text
        assert cut.json()["error"]["code"] == "overloaded" and cut.headers["retry-after"]
    finally:
        for sock in holders:
            sock.close()
    wait_inflight(tight, 0)
    fits = httpx.post(f"{tight.url}/predict", content=chunks(60_000), headers=headers)
    assert fits.status_code == 415 and fits.json()["error"]["code"] == "not_an_image"
    over = httpx.post(f"{tight.url}/predict", content=chunks(70_000), headers=headers)
    assert over.status_code == 413 and over.json()["error"]["code"] == "file_too_large"
    assert inflight(tight) == 0 and sent.is_set()


def test_bad_budget_setting_is_one_line_and_exit_2(bundle: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trainer.serve", str(bundle), "--max-inflight-bytes", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "--max-inflight-bytes: 0 must be positive" in result.stderr
    assert "Traceback" not in result.stderr
