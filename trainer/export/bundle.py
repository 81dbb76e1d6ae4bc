"""Write a deployment bundle from a checkpoint, parity-checked, atomically.

    from trainer.export.bundle import export_bundle
    export_bundle("outputs/train/runs/<time>/checkpoints/epoch_007.ckpt", out="bundle")

The bundle folder::

    model.onnx        uint8 (batch, 3, h, w) -> logits, probabilities; opset 20, one file
                      (an anomaly model: -> anomaly_score, anomaly_map; its memory bank inside)
                      (this and model.pt2: the rows of trainer.export.formats.FORMATS)
    model.pt2         the same module as a torch.export program (torch.export.load)
    schema.json       JSON Schema of request, response and errors; x-model, x-limits
    score.py          init() / run(request): onnxruntime, numpy, Pillow only
    server.py         the HTTP app (FastAPI) the container runs: python server.py
    requirements.txt  pinned to the versions the parity check ran with
    Dockerfile        slim Python, non-root user, HEALTHCHECK on /health
    model_card.md     copied when the checkpoint's folder (or its run folder) has one
    manifest.json     sha256 and size of every other file, the checkpoint's sha256, parity,
                      the precision of model.onnx (fp32, or int8: ``trainer.export.quantize``)

Everything is written into a temporary folder beside ``out`` and moved into place only after the
parity check passed; a failed export leaves nothing behind. The files go through
``trainer.utils.atomic`` (each synced to disk before the folder is renamed, so a power cut after
the move cannot leave empty files in a bundle that looks complete).
"""

from __future__ import annotations

import json
import shutil
import stat
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from trainer.checkpoint.read import load_model
from trainer.data.fingerprint import file_sha256
from trainer.export import ExportError
from trainer.utils.atomic import atomic_write, fsync_dir, fsync_file, temp_folder_beside
from trainer.utils.clock import now_utc

RUNTIME = Path(__file__).resolve().parent / "runtime"  # copied into every bundle as they are
SCORE_FILE = RUNTIME / "score.py"
SERVER_FILE = RUNTIME / "server.py"
RUNTIME_PACKAGES = ["onnxruntime", "numpy", "pillow"]  # what score.py imports
SERVER_PACKAGES = ["fastapi", "uvicorn", "python-multipart"]  # what server.py adds
FORMAT = "trainer-bundle/1"

DOCKERFILE = """\
# Scoring container of this bundle: `docker build -t {tag} . && docker run -p 8000:8000 {tag}`
FROM python:{python}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 scorer
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
# Only what scoring needs (not model.pt2); owned by root: the service reads, never changes them.
COPY model.onnx schema.json score.py server.py manifest.json ./
USER scorer
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \\
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
# Inside the container the server must listen on all interfaces; outside, it binds loopback.
CMD ["python", "server.py", "--host", "0.0.0.0", "--port", "8000"]
"""


def default_out(ckpt_path: Path) -> Path:
    """``<ckpt folder>/<ckpt stem>_bundle``: beside the checkpoint, never over it."""
    return ckpt_path.parent / f"{ckpt_path.stem}_bundle"


def _requirements() -> str:
    lines = ["# score.py"]
    lines += [f"{p}=={metadata.version(p)}" for p in RUNTIME_PACKAGES]
    lines += ["# server.py"]
    lines += [f"{p}=={metadata.version(p)}" for p in SERVER_PACKAGES]
    return "\n".join(lines) + "\n"


def _model_card(ckpt_path: Path) -> Path | None:
    for folder in (ckpt_path.parent, ckpt_path.parent.parent):
        if (folder / "model_card.md").is_file():
            return folder / "model_card.md"
    return None


def _check_target(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise ExportError(f"out: '{out}' already exists; give another out=DIR or force=true")
    if not (out / "manifest.json").is_file():
        raise ExportError(f"out: '{out}' exists and is not a bundle; refusing to replace it")


def write_files(
    folder: Path, model: Any, meta: dict[str, Any], limits: Any, ckpt_path: Path
) -> dict[str, Any]:
    """Everything but the manifest; returns the ONNX model's description."""
    from trainer.export import onnx_export
    from trainer.export.formats import FORMATS
    from trainer.export.schema import build_schema

    size = list(meta["preprocessing"]["resize"])
    module = onnx_export.deployable(model)
    written = {
        f.name: getattr(onnx_export, f.writer)(module, size, folder / f.file) for f in FORMATS
    }
    info = written["onnx"]  # the served graph: its inputs and outputs go into the schema
    schema = build_schema(meta, limits, info)
    atomic_write(folder / "schema.json", json.dumps(schema, indent=2) + "\n")
    atomic_write(folder / "score.py", SCORE_FILE.read_bytes())
    atomic_write(folder / "server.py", SERVER_FILE.read_bytes())
    atomic_write(folder / "requirements.txt", _requirements())
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    tag = meta["backbone"].replace("_", "-").lower()
    atomic_write(folder / "Dockerfile", DOCKERFILE.format(python=python, tag=tag))
    card = _model_card(ckpt_path)
    if card is not None:
        atomic_write(folder / "model_card.md", card.read_bytes())
    return info


def write_manifest(
    folder: Path,
    meta: dict[str, Any],
    ckpt_path: Path,
    info: dict[str, Any],
    parity: Any,
    precision: str = "fp32",
) -> None:
    import torch

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "manifest.json")
    manifest = {
        "format": FORMAT,
        "kind": meta.get("kind", "classifier"),
        "created_utc": now_utc(),
        "checkpoint": {"path": str(ckpt_path.resolve()), "sha256": file_sha256(ckpt_path)},
        "backbone": meta["backbone"],
        "class_names": meta["class_names"],
        "lineage": meta.get("lineage"),
        "data": {
            k: v
            for k, v in (meta.get("data") or {}).items()
            if k not in ("counts", "trained_on_sha256_16")
        },
        "onnx_opset": info["opset"],
        "precision": precision,  # model.onnx's; model.pt2 stays float32
        "versions": {
            "torch": torch.__version__,
            **{p: metadata.version(p) for p in ["onnx", *RUNTIME_PACKAGES]},
        },
        "parity": parity,
        "files": {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size} for p in files},
    }
    atomic_write(folder / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")


def _temp_folder(out: Path) -> Path:
    """The folder the bundle is written into, beside ``out``; with ``force=true`` it takes the old
    bundle's mode."""
    try:
        tmp = temp_folder_beside(out)
    except FileExistsError as err:
        raise ExportError(f"out: no free temporary folder name beside '{out}'") from err
    if out.is_dir():
        tmp.chmod(stat.S_IMODE(out.stat().st_mode))
    return tmp


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an old bundle there (``force=true``) goes only once the new one is in.

    Every file (model.onnx and model.pt2 too, which their exporters wrote) and the folder are
    synced first, and the parent after the rename, so the move is durable and complete.
    """
    for path in tmp.iterdir():
        if path.is_file():
            fsync_file(path)
    fsync_dir(tmp)
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(old / out.name)
    tmp.rename(out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old)


def export_bundle(
    ckpt_path: str | Path,
    out: str | Path | None = None,
    images: str | Path | None = None,
    force: bool = False,
    parity_images: int = 32,
    quantize: str | None = None,
    calibration_dir: str | Path | None = None,
    calibration_images: int = 64,
    **limit_overrides: Any,
) -> Path:
    """Export ``ckpt_path`` to a bundle folder; return its path.

    Args:
        ckpt_path: a checkpoint of this project (read with ``weights_only``): a classifier's or
            an anomaly model's (parity-gated by ``trainer.export.anomaly_parity``).
        out: the bundle folder (default ``<ckpt folder>/<ckpt stem>_bundle``); must not exist.
        images: folder of images for the parity check (default: the checkpoint's test split).
        force: replace an existing bundle at ``out``.
        parity_images: how many images the parity check scores.
        quantize: None (float32) or ``"int8"``: model.onnx quantized, gated by ``check_int8``.
        calibration_dir: int8 calibration images (default: the checkpoint's train split).
        calibration_images: how many calibration images.
        **limit_overrides: fields of ``schema.Limits`` (max_images, max_bytes, max_pixels, ...).
    """
    from trainer.export import quantize as int8
    from trainer.export.anomaly_parity import check_anomaly_parity
    from trainer.export.parity import check_parity, dataset_test_files, image_files
    from trainer.export.schema import limits_from_contract

    if quantize not in (None, "int8"):
        raise ExportError(
            f"quantize: '{quantize}' is not supported; give quantize=int8, or null for float32"
        )
    if calibration_dir and not quantize:
        raise ExportError("calibration_dir: calibrates int8 only; give quantize=int8 with it")
    ckpt_path = Path(ckpt_path).expanduser()
    model = load_model(ckpt_path)
    meta = model.run_metadata
    anomaly = meta.get("kind") == "anomaly"
    if quantize and anomaly:
        raise ExportError(
            f"quantize: {quantize} is not supported for an anomaly model ('{ckpt_path}'): its "
            "scores are distances to the memory bank, which int8 would blur; export it without "
            "quantize"
        )
    out = Path(out).expanduser() if out else default_out(ckpt_path)
    _check_target(out, force)
    limits = limits_from_contract(meta.get("data_contract"), **limit_overrides)
    files = (
        image_files(images, parity_images) if images else dataset_test_files(meta, parity_images)
    )
    if quantize:
        calibration, source, val = int8.int8_inputs(meta, calibration_dir, calibration_images)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_folder(out)
    try:
        info = write_files(tmp, model, meta, limits, ckpt_path)
        import torch

        from trainer.export.runtime.server import load_score  # the server's own loader

        scorer = load_score(tmp).Model(tmp)
        program = torch.export.load(str(tmp / "model.pt2")).module()
        gate = check_anomaly_parity if anomaly else check_parity
        parity = gate(model, scorer, files, program=program)
        if quantize:
            parity["int8"] = int8.quantize_bundle(
                tmp, model, scorer, files, calibration, source, val
            )
        write_manifest(tmp, meta, ckpt_path, info, parity, precision=quantize or "fp32")
        _move_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
