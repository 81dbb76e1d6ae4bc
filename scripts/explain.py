"""See what the network sees: ``python scripts/explain.py ckpt_path=PATH [overrides]``.

Writes, for each image, the board, its Grad-CAM for the predicted class and the feature maps
of every backbone stage (``<nn>_<name>.png``), all boards with their Grad-CAM (``gradcam.png``),
the worst mistakes of the checkpoint's test split (``worst_mistakes.png`` and ``.json``), and
with ``pointing_game=true`` the pointing game over the split's defect boxes (printed and in
``pointing_game.json``). See configs/explain.yaml. For an anomaly model (model=patchcore) its
anomaly map takes Grad-CAM's place (``anomaly_maps.png``; the pointing game on every defect
image), and there are no worst mistakes.

Examples:
    python scripts/explain.py ckpt_path=outputs/train/runs/<time>/checkpoints/epoch_007.ckpt
    python scripts/explain.py ckpt_path=... images=path/to/board.png
    python scripts/explain.py ckpt_path=... images=path/to/folder num_images=8
    python scripts/explain.py ckpt_path=... pointing_game=true worst_mistakes=0
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
from omegaconf import DictConfig, OmegaConf

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))


@hydra.main(version_base="1.3", config_path="../configs", config_name="explain")
def main(cfg: DictConfig) -> None:
    from trainer.tasks.explain import explain
    from trainer.utils.entry import run_reporting_errors

    run_reporting_errors(explain, OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    from trainer.utils.hydra_entry import hydra_entry

    hydra_entry(main, "explain", __doc__)
