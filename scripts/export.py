"""Export a checkpoint to a deployment bundle (ONNX, torch.export, schema.json, score.py, ...).

Examples:
    python scripts/export.py ckpt_path=outputs/train/runs/<time>/checkpoints/epoch_007.ckpt
    python scripts/export.py ckpt_path=last.ckpt out=bundles/pcb --images data/new_boards
    python scripts/export.py ckpt_path=last.ckpt out=bundles/pcb --force --max-images 8

``key=value`` and ``--key value`` are the same option. The bundle is written only when the
ONNX model agrees with the checkpoint on real images (see trainer/export/parity.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.errors import ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are a ConfigError: one line, exit code 2, via the entry wrapper."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message.replace('--ckpt-path', 'ckpt_path=PATH')}")


def _as_flags(argv: list[str]) -> list[str]:
    """``ckpt_path=X`` -> ``--ckpt-path=X`` (Hydra-style keys, as train.py and eval.py take)."""
    return [
        f"--{a.split('=', 1)[0].replace('_', '-')}={a.split('=', 1)[1]}"
        if "=" in a and not a.startswith("-")
        else a
        for a in argv
    ]


def parse(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog="export.py", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt-path", required=True, help="checkpoint to export")
    p.add_argument("--out", default=None, help="bundle folder (default: <ckpt>_bundle beside it)")
    p.add_argument(
        "--images", default=None, help="images for the parity check (default: test split)"
    )
    p.add_argument("--parity-images", type=int, default=32, help="images the parity check scores")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at out")
    p.add_argument("--max-images", type=int, default=None, help="images per request (32)")
    p.add_argument("--max-bytes", type=int, default=None, help="bytes per image (10 MiB)")
    p.add_argument("--max-pixels", type=int, default=None, help="pixels per image (4096*4096)")
    p.add_argument(
        "--any-size",
        action="store_true",
        help="accept any image size, not only the data contract's width and height range",
    )
    return p.parse_args(_as_flags(argv))


def main(argv: list[str]) -> Path:
    args = parse(argv)
    from trainer.export.bundle import export_bundle
    from trainer.export.schema import ANY_SIDE

    any_size = list(ANY_SIDE) if args.any_size else None

    out = export_bundle(
        args.ckpt_path,
        out=args.out,
        images=args.images,
        force=args.force,
        parity_images=args.parity_images,
        max_images=args.max_images,
        max_bytes=args.max_bytes,
        max_pixels=args.max_pixels,
        width=any_size,
        height=any_size,
    )
    print(f"Bundle: {out}")
    print(f"Serve it: python -m trainer.serve {out}")
    return out


if __name__ == "__main__":
    from trainer.utils.entry import run_reporting_errors

    run_reporting_errors(main, sys.argv[1:])
