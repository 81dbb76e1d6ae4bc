"""The anomaly model in TensorBoard: maps of fixed val images and the score histograms, read back
from the event file and compared with the checkpoint's own scores of the val boards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers.anomaly import anomaly_run
from trainer.callbacks.anomaly_maps import fixed_indices


def test_fixed_indices_take_half_of_each_kind() -> None:
    labels = [1, 0, 0, 1, 1, 2, 1, 1, 0, 1]  # good = 1: 6 good, 4 defective
    picked = fixed_indices(labels, good=1, count=4)
    assert [labels[i] == 1 for i in picked] == [True, True, False, False]
    assert picked == fixed_indices(labels, good=1, count=4)
    assert len(set(fixed_indices(labels, good=1, count=9))) == 9  # 4 defects + 5 good
    assert fixed_indices([1, 1, 1], good=1, count=2) == [0, 2]  # no defect: good ones only


@pytest.fixture(scope="module")
def run(pcb_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return anomaly_run(pcb_root, tmp_path_factory.mktemp("anomaly_run"))


def test_maps_and_histograms_in_tensorboard(run: Path, pcb_root: Path) -> None:
    from trainer.checkpoint.read import load_model
    from trainer.data.dataset import load_images
    from trainer.data.image_folder import scan_image_folder
    from trainer.explain.render import explained_tile

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "histograms": 0})
    acc.Reload()
    (picture,) = acc.Images("anomaly/maps")
    tile = explained_tile(torch.zeros(3, 64, 64, dtype=torch.uint8), np.zeros((64, 64)), "abc")
    assert picture.width == 4 * (tile.width + 4) + 4  # 4 boards in one row
    model = load_model(next((run / "checkpoints").glob("epoch_*.ckpt")))
    val = scan_image_folder(pcb_root).splits["val"]
    with torch.no_grad():
        images = load_images([s.path for s in val], model.preprocessing)
        scores = model(model.normalize(images))[0].numpy()
    good = np.array([s.label == model.good_index for s in val])
    for tag, mine in (("good", scores[good]), ("defect", scores[~good])):
        (event,) = acc.Histograms(f"anomaly/val_scores/{tag}")
        h = event.histogram_value
        assert h.num == len(mine) > 0, tag
        assert (h.min, h.max) == pytest.approx((mine.min(), mine.max()), rel=1e-5), tag
        assert h.sum == pytest.approx(float(mine.sum()), rel=1e-5), tag
