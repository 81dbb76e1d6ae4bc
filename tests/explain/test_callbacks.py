"""The callbacks in a real tiny training run: TensorBoard holds the images and the projector."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import compose_cfg


def _image_tags(run: Path) -> dict[str, int]:
    tags: dict[str, int] = {}
    for events in (run / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        for tag in acc.Tags()["images"]:
            tags[tag] = tags.get(tag, 0) + len(acc.Images(tag))
    return tags


def test_events_hold_gradcam_feature_maps_and_worst_mistakes(tiny_run: Path) -> None:
    tags = _image_tags(tiny_run)
    assert tags["explain/gradcam"] == 1
    assert sum(t.startswith("explain/feature_maps/") for t in tags) == 4
    assert tags["explain/worst_mistakes"] == 2  # one per validation epoch, none for sanity checks


def test_projector_files_are_written(tiny_run: Path) -> None:
    board = tiny_run / "tensorboard"
    config = (board / "projector_config.pbtxt").read_text()
    assert "sprite.png" in config and "metadata.tsv" in config
    folder = next(p.parent for p in board.rglob("tensors.tsv"))
    tensors = (folder / "tensors.tsv").read_text().splitlines()
    metadata = (folder / "metadata.tsv").read_text().splitlines()
    assert len(tensors) == 12 and len(metadata) == 13  # 12 points, one header row
    assert metadata[0].split("\t") == ["label", "predicted", "correct"]
    assert len(tensors[0].split("\t")) == 96  # test_resnet's penultimate width
    assert (folder / "sprite.png").stat().st_size > 0


def test_default_callbacks_are_cheap_and_on(tmp_path: Path) -> None:
    cfg = compose_cfg([], tmp_path)
    targets = [str(c._target_) for c in cfg.callbacks.values() if c and "_target_" in c]
    for name in ("ExplainImages", "WorstMistakes", "EmbeddingProjector"):
        assert any(t.endswith(name) for t in targets), name
