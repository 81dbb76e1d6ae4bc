"""Helpers of the anomaly-model tests: an MVTec AD tree made from generated boards, and one tiny
PatchCore run on good boards that the callback and explanation tests share."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import TINY, compose_cfg

ANOMALY = [  # experiment=pcb_anomaly at tiny size (test_resnet, 64 px), on a folder of boards
    "experiment=pcb_anomaly",
    "data=folder",
    *TINY,
    "model.coreset_fraction=0.25",
    "history.path=null",
    "logger.tensorboard.log_graph=false",
]

_runs: dict[Path, Path] = {}


def box_mask(size: tuple[int, int], bbox: list[float]) -> np.ndarray:
    """A uint8 (h, w) mask, 255 inside ``bbox`` (x0, y0, x1, y1; x1/y1 exclusive)."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = (int(round(v)) for v in bbox)
    mask[y0:y1, x0:x1] = 255
    return mask


def mvtec_tree(boards: Path, dest: Path, keep_mask: bool = True) -> Path:
    """``dest`` in the MVTec AD layout from a generated set: ``train/good`` (its good training
    boards), ``test/<label>`` (its test boards) and ``ground_truth/<kind>/<name>_mask.png``
    drawn from the generator's defect boxes (the first defect's mask left out unless
    ``keep_mask``)."""
    meta = json.loads((boards / "metadata.json").read_text())
    dropped = keep_mask
    for m in meta["images"]:
        if m["split"] == "train" and m["label"] != "good" or m["split"] == "val":
            continue
        src = boards / m["path"]
        target = dest / m["split"] / m["label"] / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)
        if m["label"] != "good" and m.get("bbox"):
            if not dropped:
                dropped = True
                continue
            with Image.open(src) as image:
                mask = box_mask(image.size, m["bbox"])
            folder = dest / "ground_truth" / m["label"]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(folder / f"{src.stem}_mask.png")
    return dest


def anomaly_run(boards: Path, tmp: Path) -> Path:
    """The run folder of a tiny PatchCore fitted on the good training boards of ``boards``
    (val and test keep every class), trained once per session."""
    if boards not in _runs:
        from trainer.tasks.train import train

        cfg = compose_cfg(
            [*ANOMALY, f"data.root={boards}", "callbacks.anomaly_maps.num_images=4"], tmp
        )
        train(cfg)
        _runs[boards] = tmp / "run"
    return _runs[boards]
