"""The pointing game: box scaling, hit test, chance, and a tiny trained model above chance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from trainer.errors import DataError
from trainer.explain.pointing_game import (
    boxed_images,
    chance_level,
    pointing_game,
    points_in_boxes,
    scale_box,
)


def test_scale_box_to_the_input_size() -> None:
    np.testing.assert_allclose(scale_box([10, 20, 30, 40], (128, 64), (64, 64)), [5, 20, 15, 40])


def test_hit_needs_the_maximum_inside_the_widened_box() -> None:
    heatmaps = np.zeros((3, 32, 32), np.float32)
    heatmaps[0, 10, 10] = 1  # inside
    heatmaps[1, 10, 17] = 1  # 2 px right of the box: inside with a 4 px margin only
    heatmaps[2, 30, 30] = 1  # far away
    boxes = np.array([[8, 8, 15, 15]] * 3, np.float32)
    assert points_in_boxes(heatmaps, boxes, 0).tolist() == [True, False, False]
    assert points_in_boxes(heatmaps, boxes, 4).tolist() == [True, True, False]


def test_chance_is_the_widened_box_share_of_the_image() -> None:
    boxes = np.array([[0, 0, 8, 8], [28, 28, 32, 32]], np.float32)
    assert chance_level(boxes, (32, 32), 0) == pytest.approx((64 + 16) / 2 / 1024)
    assert chance_level(boxes, (32, 32), 2) == pytest.approx((100 + 36) / 2 / 1024)  # clipped


def test_generator_boxes_are_read_from_metadata(pcb_root: Path) -> None:
    items = boxed_images(pcb_root, "test")
    meta = json.loads((pcb_root / "metadata.json").read_text())
    expected = [m for m in meta["images"] if m["split"] == "test" and m["label"] != "good"]
    assert len(items) == len(expected) > 0
    assert all(i.path.is_file() and i.label != "good" for i in items)
    assert all(0 <= i.bbox[0] < i.bbox[2] <= 64 and 0 <= i.bbox[1] < i.bbox[3] <= 64 for i in items)


def test_a_folder_without_metadata_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="metadata.json"):
        boxed_images(tmp_path)


def _squares(root: Path, split: str, n: int, seed: int, size: int = 64) -> list[dict]:
    """Noise boards; every other one has a yellow square (the defect) at a random place."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        label = "defect" if i % 2 else "good"
        arr = rng.normal(90, 25, (size, size, 3)).clip(0, 255)
        box = None
        if label == "defect":
            w = int(rng.integers(8, 14))
            x0, y0 = (int(v) for v in rng.integers(0, size - w, 2))
            arr[y0 : y0 + w, x0 : x0 + w] = (230, 200, 40)
            box = [x0, y0, x0 + w, y0 + w]
        rel = f"{split}/{label}/{split}_{i:04d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr.astype(np.uint8)).save(root / rel)
        images.append({"path": rel, "split": split, "label": label, "bbox": box})
    return images


@pytest.mark.slow
def test_tiny_trained_model_points_at_the_defect_above_chance(tmp_path: Path) -> None:
    """test_resnet, trained for seconds with a fixed seed on 96 boards, scored on 40 others."""
    from trainer.data.dataset import ImageSamples
    from trainer.data.image_folder import scan_image_folder
    from trainer.models.classifier import ImageClassifier

    root = tmp_path / "squares"
    meta = {"images": _squares(root, "train", 96, 0) + _squares(root, "test", 40, 1)}
    (root / "metadata.json").write_text(json.dumps(meta))
    scan = scan_image_folder(root)
    torch.manual_seed(0)
    model = ImageClassifier("test_resnet", scan.class_names, pretrained=False, input_size=64)
    data = ImageSamples(scan.splits["train"], [64, 64], cache=True)
    optimizer = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(5):
        for idx in torch.randperm(len(data)).split(16):
            loss = F.cross_entropy(model(model.normalize(data.images[idx])), data.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():  # BatchNorm statistics of the whole set, not of the last few steps
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        model(model.normalize(data.images))
    model.eval()

    result = pointing_game(model, boxed_images(root, "test"), margin=2)
    print(result.line())
    assert result.defect_images == 20
    assert result.counted >= 10  # the model did learn to classify
    assert result.score > 2 * result.chance
    assert 0 < result.chance < 0.1
