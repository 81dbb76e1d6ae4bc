"""The worst-mistakes buffer and ``write_worst_mistakes`` (the function eval calls)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from trainer.explain.mistakes import MistakeBuffer, worst_of, write_worst_mistakes


def test_buffer_keeps_the_most_confident_errors_only() -> None:
    buffer = MistakeBuffer(2)
    images = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95]])
    labels = torch.tensor([0, 0, 0, 1])  # rows 1 and 2 are wrong; 0 and 3 right
    buffer.add(images, probs, labels)
    buffer.add(images[:1], torch.tensor([[0.01, 0.99]]), torch.tensor([0]), first_index=4)
    assert [m.index for m in buffer.items] == [4, 1]
    assert [round(m.confidence, 2) for m in buffer.items] == [0.99, 0.8]
    assert all(m.predicted == 1 and m.label == 0 for m in buffer.items)
    assert buffer.items[1].image.dtype == torch.uint8 and int(buffer.items[1].image[0, 0, 0]) == 1


def test_worst_of_predictions_made_equals_the_buffer() -> None:
    """The report picks the mistakes from probabilities it has: the same as scanning them."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (40, 3, 4, 4), dtype=torch.uint8, generator=g)
    probs = torch.rand(40, 3, generator=g).softmax(dim=1)
    labels = torch.randint(0, 3, (40,), generator=g)
    buffer = MistakeBuffer(5)
    for start in range(0, 40, 16):  # batches, as a loader gives them
        end = start + 16
        buffer.add(images[start:end], probs[start:end], labels[start:end], first_index=start)
    dataset = list(zip(images, labels.tolist(), strict=True))
    picked = worst_of(probs, labels, dataset, 5)
    assert [m.index for m in picked] == [m.index for m in buffer.items]
    assert all(torch.equal(m.image, images[m.index]) for m in picked)
    assert worst_of(probs, probs.argmax(dim=1), dataset, 5) == []  # every one right


def test_write_worst_mistakes_png_and_json(pcb_root: Path, tmp_path: Path) -> None:
    from trainer.data.dataset import ImageSamples
    from trainer.data.image_folder import scan_image_folder
    from trainer.models.classifier import ImageClassifier

    scan = scan_image_folder(pcb_root)
    torch.manual_seed(0)
    model = ImageClassifier("test_resnet", scan.class_names, pretrained=False, input_size=64)
    dataset = ImageSamples(scan.splits["test"], [64, 64])
    rows = write_worst_mistakes(model, dataset, tmp_path / "out", n=3)
    assert 1 <= len(rows) <= 3  # an untrained model is wrong about most of 16 images
    assert rows == json.loads((tmp_path / "out" / "worst_mistakes.json").read_text())
    assert all(r["label"] != r["predicted"] for r in rows)
    confidences = [r["confidence"] for r in rows]
    assert confidences == sorted(confidences, reverse=True)
    assert all(Path(r["path"]).is_file() for r in rows)
    with Image.open(tmp_path / "out" / "worst_mistakes.png") as png:
        assert png.mode == "RGB" and png.width > 128 and png.height > 128
    assert model.training  # handed back in the mode it came in
