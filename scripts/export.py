"""Export a checkpoint to a deployment bundle (ONNX, torch.export, schema.json, score.py, ...).

Examples:
    python scripts/export.py ckpt_path=outputs/train/runs/<time>/checkpoints/epoch_007.ckpt
    python scripts/export.py ckpt_path=last.ckpt out=bundles/pcb images=data/new_boards
    python scripts/export.py ckpt_path=last.ckpt out=bundles/pcb force=true max_images=8
    python scripts/export.py ckpt_path=last.ckpt quantize=int8     # int8, gated like fp32

Every key is in configs/export.yaml. The bundle is written only when the ONNX model agrees with
the checkpoint on real images (see trainer/export/parity.py). Exit code: 0 written, 2 bad input
or a refused bundle (one line). What it does: trainer/tasks/export.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    from trainer.tasks.export import export
    from trainer.utils.entry import run_reporting_errors

    run_reporting_errors(export, cfg)


if __name__ == "__main__":
    from trainer.utils.hydra_entry import hydra_entry

    hydra_entry(main, "export", __doc__)
