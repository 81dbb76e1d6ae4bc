"""A tiny trained checkpoint and its bundle, made once per test session (export and serve tests).

Cached on disk below pytest's base temp folder, so ``tests/export`` and ``tests/serve`` share them.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.conftest import TINY, TINY_BOARDS, compose_cfg

# Small limits so that every refusal can be provoked with small files.
LIMITS = {"max_images": 4, "max_bytes": 64 * 1024, "max_pixels": 256 * 256}


def tiny_checkpoint(base: Path) -> Path:
    """1 epoch of ``test_resnet`` on 64 px boards; its last checkpoint."""
    ckpt = base / "run" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        from trainer.tasks.train import train

        cfg = compose_cfg(
            [*TINY, *TINY_BOARDS, f"paths.data_dir={base / 'data'}", "test=false", "~logger"],
            base,
        )
        train(cfg)
    return ckpt


def tiny_bundle(base: Path) -> Path:
    """The bundle of ``tiny_checkpoint`` with ``LIMITS`` (parity on the test split)."""
    out = base / "bundle"
    if not (out / "manifest.json").is_file():
        from trainer.export.bundle import export_bundle

        ckpt = tiny_checkpoint(base)
        (ckpt.parent / "model_card.md").write_text("# Tiny model\n")
        export_bundle(ckpt, out=out, parity_images=16, **LIMITS)
    return out


def split_images(base: Path) -> list[Path]:
    """The generated test split's files (64 px RGB PNGs)."""
    return sorted((base / "data").rglob("test/*/*.png"))


def encoded(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(buf, format=fmt)
    return buf.getvalue()


# Prefix of a `python -I -S -c` script: no site hooks (so no editable install of this project),
# no PYTHONPATH; sys.path is argv[1] (the bundle, the standard library, site-packages), and a
# meta-path finder makes any import of torch or of this project fail loudly.
ISOLATE = """
import json, sys
sys.path[:] = json.loads(sys.argv.pop(1))
class Forbidden:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "trainer", "lightning", "timm"}:
            raise ImportError(f"the bundle imported {name}")
        return None
sys.meta_path.insert(0, Forbidden())
"""


def load_score_module(bundle: Path, name: str = "score_under_test") -> Any:
    """The bundle's score.py as a module, without writing ``__pycache__`` into the shared bundle
    (other tests compare its files with the manifest)."""
    spec = importlib.util.spec_from_file_location(name, bundle / "score.py")
    module = importlib.util.module_from_spec(spec)
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


def site_dirs() -> list[str]:
    """The standard library and the folders of onnxruntime, numpy, Pillow (and fastapi)."""
    import fastapi
    import onnxruntime
    import PIL

    dirs = {str(Path(m.__file__).resolve().parents[1]) for m in (np, onnxruntime, PIL, fastapi)}
    paths = sysconfig.get_paths()
    lib_dynload = str(Path(paths["stdlib"]) / "lib-dynload")
    return [paths["stdlib"], paths["platstdlib"], lib_dynload, *sorted(dirs)]
