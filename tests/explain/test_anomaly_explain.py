"""``scripts/explain.py`` on an anomaly model: its anomaly map in Grad-CAM's place, and the
pointing game on every defect test board, counted by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.anomaly import anomaly_run
from tests.helpers.explain import explain_cfg


def test_explain_an_anomaly_checkpoint(
    pcb_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from trainer.checkpoint.read import load_model
    from trainer.data.dataset import load_images
    from trainer.tasks.explain import explain

    run = anomaly_run(pcb_root, tmp_path_factory.mktemp("anomaly_run"))
    ckpt = next((run / "checkpoints").glob("epoch_*.ckpt"))
    out = tmp_path / "out"
    # worst mistakes are a classifier's view: none for an anomaly model
    cfg = explain_cfg(ckpt, out, worst_mistakes=8)
    result = explain(cfg)
    assert result["images"] == 4 and "worst_mistakes" not in result
    assert not (out / "gradcam.png").exists() and not (out / "worst_mistakes.png").exists()
    with Image.open(out / "anomaly_maps.png") as img:
        assert img.mode == "RGB" and img.width > 4 * 384
    assert len(list((out / "feature_maps").glob("*.png"))) == 4

    game = json.loads((out / "pointing_game.json").read_text())
    meta = json.loads((pcb_root / "metadata.json").read_text())
    boxed = [m for m in meta["images"] if m["split"] == "test" and m.get("bbox")]
    assert game["heatmap"] == "anomaly map"
    assert game["counted"] == game["defect_images"] == len(boxed) > 0
    model = load_model(ckpt)
    with torch.no_grad():
        images = load_images([pcb_root / m["path"] for m in boxed], model.preprocessing)
        maps = model(model.normalize(images))[1][:, 0].numpy()
    hits = 0
    for m, heat in zip(boxed, maps, strict=True):  # 64 px boards at 64 px: boxes as written
        y, x = np.unravel_index(int(heat.argmax()), heat.shape)
        x0, y0, x1, y1 = m["bbox"]
        hits += x0 - 4 <= x + 0.5 <= x1 + 4 and y0 - 4 <= y + 0.5 <= y1 + 4
    assert game["hits"] == hits and game["score"] == pytest.approx(hits / len(boxed))
