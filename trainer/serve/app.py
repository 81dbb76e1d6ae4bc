"""HTTP server of an export bundle: a FastAPI app around the bundle's own ``score.py``.

The same file runs two ways, so the container and ``python -m trainer.serve BUNDLE`` behave
identically: the export copies it into every bundle as ``server.py`` (the Dockerfile's command),
and ``trainer.serve`` imports it. It needs only fastapi, uvicorn and python-multipart besides
``score.py``'s onnxruntime, numpy and Pillow: no torch, no ``trainer`` import.

Endpoints: ``POST /predict`` (multipart files, one raw image body, or the JSON request of
``schema.json``), ``GET /health``, ``GET /schema``, ``GET /metadata``. Every check lives in
``score.py``; a request it refuses is a 4xx JSON ``{"error": {"code", "message", "image"}}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

log = logging.getLogger("bundle.server")
PART_OVERHEAD = 16 * 1024  # bytes of multipart headers allowed per image


class BundleError(Exception):
    """The folder is not a usable bundle."""


def load_score(bundle_dir: Path) -> ModuleType:
    """Import ``bundle_dir/score.py`` as a module of its own (not from ``sys.path``)."""
    for name in ("score.py", "schema.json", "model.onnx"):
        if not (bundle_dir / name).is_file():
            raise BundleError(f"'{bundle_dir}' is not an export bundle: it has no {name}")
    spec = importlib.util.spec_from_file_location("bundle_score", bundle_dir / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def create_app(bundle_dir: str | Path, threads: int | None = None) -> FastAPI:
    """The app serving ``bundle_dir``; loads the model once.

    Args:
        bundle_dir: the export bundle folder.
        threads: ONNX Runtime intra-op threads per request (default: 1; requests run in
            parallel, as many as there are cores).
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
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    max_raw = limits["max_images"] * (limits["max_bytes"] + PART_OVERHEAD) + PART_OVERHEAD
    max_json = max_raw * 4 // 3 + PART_OVERHEAD

    # Scoring runs in worker threads, at most as many at once as the cores can keep busy:
    # more would only make ONNX Runtime's threads fight over the same cores.
    ort_threads = model.session.get_session_options().intra_op_num_threads or 1
    scoring = anyio.CapacityLimiter(max(1, (os.cpu_count() or 1) // ort_threads))

    async def in_thread(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=scoring)

    app = FastAPI(title=model.schema["title"], docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(score.InputError)
    async def refused(request: Request, err: Any) -> JSONResponse:
        return JSONResponse(err.to_dict(), status_code=err.status)

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        body = {"error": {"code": "internal_error", "message": type(err).__name__, "image": None}}
        return JSONResponse(body, status_code=500)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "backbone": model.info["backbone"]}

    @app.get("/schema")
    def schema() -> dict[str, Any]:
        return model.schema

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        return {
            **{k: model.info[k] for k in ("backbone", "class_names", "operating_point")},
            "preprocessing": model.info["preprocessing"],
            "input": model.info["input"],
            "opset": model.info["opset"],
            "limits": limits,
            "manifest": manifest,
        }

    async def read_capped(request: Request, cap: int, code: str, what: str) -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise score.InputError(code, f"{what} is over the limit of {cap} bytes", 413)
        return bytes(body)

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
        if length.isdigit() and int(length) > (
            max_json if ctype == "application/json" else max_raw
        ):
            raise score.InputError(
                "request_too_large", f"the request body of {length} bytes is over the limit", 413
            )
        if ctype in ("multipart/form-data", "application/json") and not length.isdigit():
            raise score.InputError(
                "length_required", f"a {ctype} body needs a Content-Length header", 411
            )
        if ctype == "multipart/form-data":
            images = await multipart(request)
        elif ctype == "application/json":
            body = await read_capped(request, max_json, "request_too_large", "the JSON body")
            return await in_thread(model.run, body)
        elif ctype.startswith("image/") or ctype in ("application/octet-stream", ""):
            name = request.query_params.get("name", "body")
            body = await read_capped(
                request, limits["max_bytes"], "file_too_large", f"image '{name}'"
            )
            images = [(name, body)] if body else []
        else:
            raise score.InputError(
                "unsupported_media_type",
                f"content type '{ctype}': send multipart/form-data, an image/* body or "
                "application/json",
                415,
            )
        return await in_thread(model.predict, images)

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
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    p.add_argument("--access-log", action="store_true", help="log every request")
    return p


def serve(args: argparse.Namespace) -> None:
    """Build the app (errors before binding) and run uvicorn until interrupted."""
    import uvicorn

    app = create_app(args.bundle, args.threads)
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log
    )


if __name__ == "__main__":  # the bundle's server.py: serve the folder it lives in
    try:
        serve(parser(Path(__file__).resolve().parent).parse_args())
    except BundleError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
