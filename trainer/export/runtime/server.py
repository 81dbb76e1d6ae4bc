"""HTTP server of an export bundle: a FastAPI app around the bundle's own ``score.py``.

The same file runs two ways, so the container and ``python -m trainer.serve BUNDLE`` behave
identically: the export copies it into every bundle as ``server.py`` (the Dockerfile's command),
and ``trainer.serve`` imports it. It needs only fastapi, uvicorn and python-multipart besides
``score.py``'s onnxruntime, numpy and Pillow: no torch, no ``trainer`` import, and no other file
of its own (hence the body budget lives here rather than in a module beside it).

Endpoints: ``POST /predict`` (multipart files, one raw image body, or the JSON request of
``schema.json``; ``?map=true``: an anomaly model answers its anomaly maps too), ``GET /health``,
``GET /schema``, ``GET /metadata`` (``kind``: ``classifier`` or ``anomaly``). Every check lives in
``score.py``; a request it refuses is a 4xx JSON ``{"error": {"code", "message", "image"}}``.
Request bodies in flight share one byte budget (``--max-inflight-bytes``): a body that does not
fit now is a 503 ``overloaded`` with ``Retry-After``, answered before the body is read, and a body
must arrive within ``--body-timeout`` seconds, so a stalled client gives its bytes back.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import platform
import sys
import threading
from collections.abc import Iterator
from importlib import metadata as dist
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("bundle.server")
PART_OVERHEAD = 16 * 1024  # bytes of multipart headers (or JSON name and syntax) per image
RETRY_AFTER_S = 2  # what a 503 tells the client to wait
BODY_TIMEOUT_S = 60.0  # default: the whole body must arrive within this
RUNTIME_PACKAGES = ["onnxruntime", "numpy", "pillow", "fastapi", "starlette", "uvicorn"]


class BundleError(Exception):
    """The folder is not a usable bundle, or the server's settings are unusable."""


class Overloaded(Exception):
    """A request would hold ``total`` bytes, more than the budget has left (``used`` of
    ``capacity`` are held): a 503 to retry, or a 413 when ``total`` exceeds ``capacity``."""

    def __init__(self, total: int, used: int, capacity: int) -> None:
        super().__init__(f"{total} bytes wanted, {used} of {capacity} in use")
        self.total, self.used, self.capacity = total, used, capacity


class BodyBudget:
    """The bytes of request bodies the process holds at once, all requests together.

    Each request reserves its declared ``Content-Length`` before reading (or its chunks as they
    arrive) and gives everything back when it is answered, so that N large requests cannot hold
    N times their size. Reservations are taken on the event loop, without an ``await`` between
    check and update; the lock only keeps the count exact should a thread ever call it.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self) -> Iterator[Reservation]:
        """A request's reservation, released whatever happens to the request."""
        held = Reservation(self)
        try:
            yield held
        finally:
            held.release()

    def _take(self, held: int, n: int) -> None:
        with self._lock:
            if self.used + n > self.capacity:
                raise Overloaded(held + n, self.used, self.capacity)
            self.used += n

    def _give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class Reservation:
    """What one request holds of a ``BodyBudget``."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget, self.bytes = budget, 0

    def cover(self, total: int) -> None:
        """Hold at least ``total`` bytes; raises ``Overloaded`` (and holds no more) if over."""
        if total > self.bytes:
            self.budget._take(self.bytes, total - self.bytes)
            self.bytes = total

    def release(self) -> None:
        self.budget._give(self.bytes)
        self.bytes = 0


def load_score(bundle_dir: Path) -> ModuleType:
    """Import ``bundle_dir/score.py`` as a module of its own (not from ``sys.path``)."""
    for name in ("score.py", "schema.json", "model.onnx"):
        if not (bundle_dir / name).is_file():
            raise BundleError(f"'{bundle_dir}' is not an export bundle: it has no {name}")
    spec = importlib.util.spec_from_file_location("bundle_score", bundle_dir / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def file_sha256(path: Path) -> str:
    # not trainer.data.fingerprint's: a bundle runs without the package
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return dist.version(package)
    except dist.PackageNotFoundError:
        return None


def public_metadata(bundle_dir: Path, model: Any, limits: dict[str, Any]) -> dict[str, Any]:
    """What a client needs to call and trust the model, by allowlist: never the manifest whole.

    The manifest records where the checkpoint and the data were on the build machine and the
    training command line; none of that is served. The bundle digest is the sha256 of
    ``manifest.json``, which lists the sha256 of every other file of the bundle.
    """
    info = model.info
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    files = manifest.get("files") or {}
    keys = ("backbone", "class_names", "preprocessing", "operating_point", "input", "outputs")
    return {
        "kind": info.get("kind", "classifier"),
        **({"anomaly": info["anomaly"]} if "anomaly" in info else {}),
        **{k: info.get(k) for k in keys},
        "opset": info.get("opset"),
        "limits": limits,
        "model": {
            "file": "model.onnx",
            "sha256": file_sha256(bundle_dir / "model.onnx"),
            "bytes": (bundle_dir / "model.onnx").stat().st_size,
        },
        "bundle": {
            "format": manifest.get("format"),
            "created_utc": manifest.get("created_utc"),
            "sha256": file_sha256(manifest_path) if manifest else None,
            "files": {
                name: {"sha256": f.get("sha256"), "bytes": f.get("bytes")}
                for name, f in files.items()
            },
            "checkpoint_sha256": (manifest.get("checkpoint") or {}).get("sha256"),
            "exported_with": manifest.get("versions"),
            "parity": manifest.get("parity"),
        },
        "runtime": {
            "python": platform.python_version(),
            **{p: _version(p) for p in RUNTIME_PACKAGES},
        },
    }


def _setting(value: Any, flag: str, env: str, cast: type, default: Any) -> Any:
    """The flag, else the environment variable ``env``, else ``default``; must be positive."""
    source = flag
    if value is None:
        source, value = env, os.environ.get(env) or default
    try:
        number = float(value)  # 1e9 and 1_000_000 are numbers too
        value = cast(number) if cast is float or number.is_integer() else cast(value)
    except (TypeError, ValueError, OverflowError):
        kind = "a whole number" if cast is int else "a number"
        raise BundleError(f"{source}: '{value}' is not {kind}") from None
    if value <= 0:
        raise BundleError(f"{source}: {value} must be positive")
    return value


def create_app(
    bundle_dir: str | Path,
    threads: int | None = None,
    max_inflight_bytes: int | None = None,
    body_timeout: float | None = None,
) -> FastAPI:
    """The app serving ``bundle_dir``; loads the model once.

    Args:
        bundle_dir: the export bundle folder.
        threads: ONNX Runtime intra-op threads per request (default: 1; requests run in
            parallel, as many as there are cores).
        max_inflight_bytes: request-body bytes held at once, all requests together (default:
            ``SERVE_MAX_INFLIGHT_BYTES``, else room for as many of the largest requests as
            are scored at once, 2 to 4).
        body_timeout: seconds a request body may take to arrive (default:
            ``SERVE_BODY_TIMEOUT``, else 60).
    """
    bundle_dir = Path(bundle_dir).expanduser().resolve()
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle '{bundle_dir}' is not a folder; give an export bundle folder")
    score = load_score(bundle_dir)
    try:
        model = score.init(bundle_dir, threads)
    except Exception as err:
        raise BundleError(f"bundle '{bundle_dir}' cannot be loaded: {err}") from err
    limits = model.limits
    n, each = limits["max_images"], limits["max_bytes"]
    max_raw = n * (each + PART_OVERHEAD) + PART_OVERHEAD
    max_json = n * (4 * -(-each // 3) + PART_OVERHEAD) + PART_OVERHEAD  # base64 is 4/3 of it

    # Scoring runs in worker threads, at most as many at once as the cores can keep busy:
    # more would only make ONNX Runtime's threads fight over the same cores.
    ort_threads = model.session.get_session_options().intra_op_num_threads or 1
    slots = max(1, (os.cpu_count() or 1) // ort_threads)
    scoring = anyio.CapacityLimiter(slots)
    largest = max(max_raw, max_json)
    default_budget = min(max(slots, 2), 4) * largest
    budget = BodyBudget(
        _setting(
            max_inflight_bytes,
            "--max-inflight-bytes",
            "SERVE_MAX_INFLIGHT_BYTES",
            int,
            default_budget,
        )
    )
    body_timeout = _setting(
        body_timeout, "--body-timeout", "SERVE_BODY_TIMEOUT", float, BODY_TIMEOUT_S
    )
    if budget.capacity < largest:
        log.warning(
            "max inflight bytes %d is below the largest request the limits allow (%d bytes): "
            "larger ones are refused",
            budget.capacity,
            largest,
        )
    served = public_metadata(
        bundle_dir,
        model,
        {
            **limits,
            "max_request_bytes": max_raw,
            "max_json_bytes": max_json,
            "max_inflight_bytes": budget.capacity,
            "body_timeout_s": body_timeout,
        },
    )

    async def in_thread(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=scoring)

    app = FastAPI(title=model.schema["title"], docs_url=None, redoc_url=None, openapi_url=None)

    def error(
        code: str, message: str, status: int, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        body = {"error": {"code": code, "message": message, "image": None}}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(score.InputError)
    async def refused(request: Request, err: Any) -> JSONResponse:
        # A stalled client is let go: nothing more of its body is worth waiting for.
        headers = {"Connection": "close"} if err.status == 408 else None
        return JSONResponse(err.to_dict(), status_code=err.status, headers=headers)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, err: Overloaded) -> JSONResponse:
        if err.total > err.capacity:  # would never fit: retrying cannot help
            return error(
                "request_too_large",
                f"the request body of {err.total} bytes is over the server's limit of "
                f"{err.capacity} bytes in flight",
                413,
            )
        return error(
            "overloaded",
            f"the server holds {err.used} of its {err.capacity} bytes for request bodies in "
            f"flight and this one needs {err.total}; retry in {RETRY_AFTER_S} s",
            503,
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, err: ClientDisconnect) -> Response:
        log.info("client left during the body of %s", request.url.path)
        return Response(status_code=400)  # nobody is there to read it

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error("internal_error", type(err).__name__, 500)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "backbone": model.info["backbone"],
            "inflight_bytes": budget.used,
        }

    @app.get("/schema")
    def schema() -> dict[str, Any]:
        return model.schema

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        return served

    @contextlib.contextmanager
    def deadline() -> Iterator[None]:
        try:
            with anyio.fail_after(body_timeout):
                yield
        except TimeoutError:
            raise score.InputError(
                "body_timeout", f"the request body did not arrive within {body_timeout:g} s", 408
            ) from None

    async def read_capped(
        request: Request, held: Reservation, cap: int, too_large: Any
    ) -> bytearray:
        """The body, refused past ``cap``; bytes beyond those reserved (no Content-Length) are
        reserved as they arrive."""
        body = bytearray()
        async for chunk in request.stream():
            if len(body) + len(chunk) > cap:
                raise too_large("")
            held.cover(len(body) + len(chunk))
            body += chunk
        return body

    def wants_map(request: Request) -> bool:
        """``?map=true``, checked before the body is read."""
        value = request.query_params.get("map", "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise score.InputError("bad_request", f"map: '{value}' is not true or false", 400)
        if value in ("true", "1") and model.kind != score.ANOMALY:
            raise score.InputError(
                "bad_request", "map: only an anomaly model has an anomaly map; drop map", 400
            )
        return value in ("true", "1")

    def score_json(body: bytearray, map: bool) -> dict[str, Any]:
        """Parse and score a JSON body, keeping at most two copies of it at any time."""
        try:
            text = body.decode("utf-8")
            body.clear()  # the text holds it now
            request = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise score.InputError("bad_request", f"the request is not JSON ({err})", 400) from err
        del text  # the parsed request holds it now
        return model.run(request, map)

    async def multipart(request: Request) -> list[tuple[str, bytes]]:
        try:
            form = await request.form(
                max_files=limits["max_images"], max_fields=limits["max_images"] + 8
            )
        except HTTPException as err:
            if "Too many files" in str(err.detail):
                raise score.InputError(
                    "too_many_images",
                    f"the request holds more than the limit of {limits['max_images']} images",
                    413,
                ) from err
            raise score.InputError("bad_request", f"multipart body: {err.detail}", 400) from err
        images = []
        try:
            for field, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    continue
                name = value.filename or field
                data = await value.read(limits["max_bytes"] + 1)
                if len(data) > limits["max_bytes"]:
                    raise score.InputError(
                        "file_too_large",
                        f"image '{name}' is over the limit of {limits['max_bytes']} bytes",
                        413,
                        name,
                    )
                images.append((name, data))
        finally:
            await form.close()
        return images

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        length = request.headers.get("content-length", "")
        declared = int(length) if length.isdigit() else None
        is_raw = ctype.startswith("image/") or ctype in ("application/octet-stream", "")
        if not is_raw and ctype not in ("multipart/form-data", "application/json"):
            raise score.InputError(
                "unsupported_media_type",
                f"content type '{ctype}': send multipart/form-data, an image/* body or "
                "application/json",
                415,
            )
        name = request.query_params.get("name", "body")
        want_map = wants_map(request)
        cap = max_json if ctype == "application/json" else max_raw
        code, what = "request_too_large", f"the {ctype} body"
        if is_raw:
            cap, code, what = limits["max_bytes"], "file_too_large", f"image '{name}'"

        def too_large(size: str) -> Exception:
            image = name if is_raw else None
            return score.InputError(
                code, f"{what}{size} is over the limit of {cap} bytes", 413, image
            )

        if declared is not None and declared > cap:
            raise too_large(f" of {declared} bytes")
        if not is_raw and declared is None:
            raise score.InputError(
                "length_required", f"a {ctype} body needs a Content-Length header", 411
            )
        with budget.hold() as held:
            if declared is not None:
                held.cover(declared)  # before reading a byte: a 503 costs the server nothing
            with deadline():
                if ctype == "multipart/form-data":
                    images = await multipart(request)
                elif ctype == "application/json":
                    body = await read_capped(request, held, cap, too_large)
                else:
                    raw = await read_capped(request, held, cap, too_large)
                    images = [(name, bytes(raw))] if raw else []
            if ctype == "application/json":
                return await in_thread(score_json, body, want_map)
            return await in_thread(model.predict, images, want_map)

    return app


def parser(default_bundle: Path | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Serve an export bundle over HTTP (FastAPI, uvicorn).")
    p.add_argument(
        "bundle",
        nargs="?" if default_bundle else None,
        default=default_bundle,
        help="the bundle folder" + (" (default: this file's folder)" if default_bundle else ""),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per request")
    p.add_argument(
        "--max-inflight-bytes",
        type=int,
        default=None,
        help="request-body bytes held at once, all requests together; beyond: 503 with "
        "Retry-After (default: SERVE_MAX_INFLIGHT_BYTES, else 2 to 4 of the largest requests)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=None,
        help="seconds a request body may take to arrive; then 408 "
        f"(default: SERVE_BODY_TIMEOUT, else {BODY_TIMEOUT_S:g})",
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    p.add_argument("--access-log", action="store_true", help="log every request")
    return p


def serve(args: argparse.Namespace) -> None:
    """Build the app (errors before binding) and run uvicorn until interrupted."""
    import uvicorn

    app = create_app(args.bundle, args.threads, args.max_inflight_bytes, args.body_timeout)
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log
    )


if __name__ == "__main__":  # the bundle's server.py: serve the folder it lives in
    try:
        serve(parser(Path(__file__).resolve().parent).parse_args())
    except BundleError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
