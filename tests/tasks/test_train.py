"""The whole pipeline on tiny data: fast run, overfitting, checkpoints, resume, TensorBoard."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from trainer.checkpoint.read import checkpoint_metadata, load_checkpoint
from trainer.errors import CheckpointError
from trainer.tasks.train import train


def events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "histograms": 0})
    acc.Reload()
    return acc


def graph_events(run: Path) -> int:
    """Model graphs written in all of the run's event files (each Trainer run opens one)."""
    files = (run / "tensorboard").glob("events.out.tfevents.*")
    return sum(e.HasField("graph_def") for f in files for e in EventFileLoader(str(f)).Load())


def test_debug_fast_runs_every_stage(tiny_cfg) -> None:
    metrics = train(tiny_cfg("debug=fast"))
    assert "test/acc" in metrics and 0 <= metrics["test/acc"] <= 1
    assert "val/f1" in metrics


def test_overfits_a_few_batches(tiny_cfg) -> None:
    cfg = tiny_cfg(
        "debug=overfit",
        "trainer.overfit_batches=2",
        "trainer.max_epochs=25",
        "model.optimizer.lr=3e-3",
        "model.scheduler=null",
        "test=false",
        "callbacks.model_checkpoint=null",
        "~logger",
    )
    metrics = train(cfg)
    assert metrics["train/acc"] >= 0.95, metrics


@pytest.fixture
def trained(tiny_cfg) -> tuple[Path, dict[str, float]]:
    """Two tiny epochs with every callback and the TensorBoard logger."""
    cfg = tiny_cfg("trainer.max_epochs=2", "trainer.log_every_n_steps=1")
    metrics = train(cfg)
    return Path(cfg.paths.output_dir), metrics


def test_checkpoints_describe_themselves(trained) -> None:
    run, _ = trained
    ckpts = sorted((run / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in ckpts} >= {"last.ckpt"} and len(ckpts) >= 2
    meta = checkpoint_metadata(run / "checkpoints" / "last.ckpt")
    assert meta["class_names"] == [
        "good",
        "misplaced_component",
        "missing_component",
        "solder_bridge",
    ]
    assert meta["backbone"] == "test_resnet"
    assert meta["preprocessing"]["input_size"] == [3, 64, 64]
    assert len(meta["data"]["fingerprint"]) == 64
    assert meta["data"]["counts"]["train"]["good"] > 0
    assert meta["config"]["model"]["backbone"] == "test_resnet"
    assert "git_commit" in meta["lineage"] and "git_dirty" in meta["lineage"]


def test_tensorboard_has_the_promised_tags(trained) -> None:
    run, _ = trained
    acc = events(run)
    tags = acc.Tags()
    for scalar in ("train/loss_step", "train/acc", "val/loss", "val/acc", "val/f1", "val/auroc"):
        assert scalar in tags["scalars"], (scalar, tags["scalars"])
    assert any(t.startswith("lr-") for t in tags["scalars"])
    assert "val/auroc_pass_fail" in tags["scalars"]
    assert {"samples/train", "samples/val"} <= set(tags["images"])
    assert any(t.startswith("weights/") for t in tags["histograms"])
    assert tags["graph"]
    # traced once, at fit's start: testing the best checkpoint (a second Trainer run) adds none
    assert graph_events(run) == 1
    hparams = [t for t in tags["tensors"] if "hparams" in t] + [
        t for t in tags.get("scalars", []) if t.startswith("hparams/")
    ]
    assert hparams, tags


def test_resume_continues_from_the_checkpoint(trained, tiny_cfg) -> None:
    run, _ = trained
    last = run.parent / "saved_last.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", last)
    before = load_checkpoint(last)
    assert before["epoch"] == 1
    cfg = tiny_cfg(f"ckpt_path={last}", "trainer.max_epochs=3", "test=false")
    train(cfg)
    resumed = load_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert resumed["epoch"] == 2
    steps_per_epoch = before["global_step"] // 2
    assert resumed["global_step"] == before["global_step"] + steps_per_epoch
    assert resumed["optimizer_states"][0]["state"], "optimizer state was not restored"


def test_checkpoint_with_other_classes_is_refused(trained, tiny_cfg, tmp_path: Path) -> None:
    run, _ = trained
    other = tmp_path / "other"
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (other / name).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(other / name / f"{i}.png")
    cfg = tiny_cfg("data=folder", f"data.root={other}", f"ckpt_path={run}/checkpoints/last.ckpt")
    with pytest.raises(CheckpointError, match="trained on classes"):
        train(cfg)


def test_not_a_checkpoint_is_refused(tiny_cfg, tmp_path: Path) -> None:
    fake = tmp_path / "fake.ckpt"
    fake.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="fake.ckpt"):
        train(tiny_cfg(f"ckpt_path={fake}"))


def test_stop_at_target_counts_exactly_the_target_as_reached() -> None:
    import torch

    from trainer.callbacks.stop_at_target import reached

    assert reached(torch.tensor(380 / 400).item(), 0.95)  # float32(0.95) < 0.95 as a float
    assert not reached(379 / 400, 0.95)


def test_stop_at_target_stops_the_run(tiny_cfg) -> None:
    cfg = tiny_cfg("trainer.max_epochs=4", "callbacks.stop_at_target.target=0.0", "test=false")
    train(cfg)
    acc = events(Path(cfg.paths.output_dir))
    assert len(acc.Scalars("val/acc")) == 1  # stopped after the first validation


def test_resume_into_a_folder_of_another_backbone_is_refused(trained, tiny_cfg) -> None:
    run, _ = trained  # resume=auto finds this folder's last.ckpt, of test_resnet
    cfg = tiny_cfg("model.backbone=test_efficientnet", f"hydra.run.dir={run}")
    cfg.paths.output_dir = str(run)
    with pytest.raises(
        CheckpointError, match="test_resnet that do not fit this run's test_efficientnet"
    ):
        train(cfg)


def test_progress_bar_shows_the_loss_without_reading_it_every_step(tiny_cfg, monkeypatch) -> None:
    from trainer.callbacks.progress_bar import SyncFreeRichProgressBar

    seen: list[tuple[dict, dict]] = []
    original = SyncFreeRichProgressBar.get_metrics

    def spy(self, trainer, pl_module):  # noqa: ANN001, ANN202
        items = original(self, trainer, pl_module)
        if trainer.training:
            seen.append((dict(items), dict(trainer.progress_bar_metrics)))
        return items

    monkeypatch.setattr(SyncFreeRichProgressBar, "get_metrics", spy)
    bar = (
        "{_target_:trainer.callbacks.progress_bar.SyncFreeRichProgressBar,metrics_every_n_steps:2}"
    )
    train(tiny_cfg(f"callbacks.rich_progress_bar={bar}", "trainer.max_epochs=2", "test=false"))
    assert any(isinstance(items.get("train/loss"), float) for items, _ in seen)
    # Lightning converts (syncs) prog_bar step metrics after every batch: the loss is not one.
    assert not any(k.startswith("train/loss") for _, pbar in seen for k in pbar)


class DecliningScore(L.Callback):
    """Logs ``val/score`` 0.9, 0.5, 0.3, ...: the first epoch is the best one."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("val/score", 0.9 - 0.4 * trainer.current_epoch**0.5)


def test_the_run_reports_the_kept_model_not_the_last_epoch(tiny_cfg) -> None:
    """With early stopping the last epochs come after the best: a sweep and the history must see
    the figures of the checkpoint that is tested and shipped."""
    from trainer.history.store import RunHistory

    cfg = tiny_cfg(
        "trainer.max_epochs=3",
        "+callbacks.declining._target_=tests.tasks.test_train.DecliningScore",
        "callbacks.model_checkpoint.monitor=val/score",
        "callbacks.early_stopping.monitor=val/score",
    )
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    (best,) = (run / "checkpoints").glob("epoch_*.ckpt")
    assert best.name == "epoch_000.ckpt"
    assert metrics["val/score"] == pytest.approx(0.9)  # not the last epoch's 0.9 - 0.4 * 2**0.5
    first_acc = events(run).Scalars("val/acc")[0].value
    assert metrics["val/acc"] == pytest.approx(first_acc)
    (row,) = RunHistory(Path(cfg.history.path)).runs()
    assert row["metrics"]["val/score"] == pytest.approx(0.9)
    assert row["metrics"]["val/acc"] == pytest.approx(first_acc)


def test_input_size_auto_follows_the_training_images(tiny_cfg, tmp_path: Path, caplog) -> None:
    """data=folder with model.input_size=auto: 90x60 px images (sqrt 73.5) train at 64 px,
    the multiple of 32 nearest, within test_resnet's pretrained 160 px."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(
                root / name / f"{i}.png"
            )
    overrides = (
        "data=folder",
        f"data.root={root}",
        "model.input_size=auto",
        "test=false",
        "data.good_class=null",
    )
    cfg = tiny_cfg(*overrides)
    with caplog.at_level("INFO", logger="trainer.tasks.train"):
        train(cfg)
    assert "median side 73 px: input 64 px" in caplog.text
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["trainer_metadata"]["preprocessing"]["input_size"] == [3, 64, 64]
    # the folder grows with larger images (median 150 px): the resumed run keeps its 64 px
    for name in ("a", "b"):
        for i in range(30):
            Image.fromarray(rng.integers(0, 255, (150, 150, 3), dtype=np.uint8)).save(
                root / name / f"big{i}.png"
            )
    caplog.clear()
    with caplog.at_level("INFO", logger="trainer.tasks.train"):
        train(tiny_cfg(*overrides, f"ckpt_path={last}", "trainer.max_epochs=2"))
    assert "64 px, the size of the run it resumes" in caplog.text
    assert load_checkpoint(last)["trainer_metadata"]["preprocessing"]["input_size"] == [3, 64, 64]


def test_the_input_size_auto_rule() -> None:
    from trainer.models.backbone import input_size_for

    assert input_size_for("resnet10t", 25) == 32  # never below one multiple
    assert input_size_for("resnet10t", 85) == 96  # the nearest multiple of 32
    assert input_size_for("resnet10t", 75) == 64
    assert input_size_for("resnet10t", 2000) == 176  # at most the pretrained size
    assert input_size_for("resnet10t", None) == 176


def _head_only_epoch_from_another_product(tiny_cfg, *overrides: str):  # noqa: ANN001, ANN202
    """One head-only epoch on product b from a committed checkpoint: (its weights, the run's
    weights, the backbone's keys)."""
    source = Path(__file__).parents[1] / "helpers" / "fixtures" / "pre_layout_test_resnet.ckpt"
    cfg = tiny_cfg(
        "data.generator.product=b",
        "model.pretrained=true",
        f"model.pretrained_path={source}",
        "model.freeze_backbone_epochs=1",
        "test=false",
        *overrides,
    )
    train(cfg)
    before = load_checkpoint(source)["state_dict"]
    after = load_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")["state_dict"]
    body = [k for k in before if k.startswith("net.") and not k.startswith("net.fc.")]
    return before, after, body


def test_a_run_starts_from_another_products_checkpoint(tiny_cfg) -> None:
    """model.pretrained_path=<a checkpoint of ours> on product b: the head-only first epoch
    leaves the source's backbone exactly as it was (batch-norm statistics included)."""
    before, after, body = _head_only_epoch_from_another_product(tiny_cfg)
    assert body and all(torch.equal(after[k], before[k]) for k in body)
    assert not torch.equal(after["net.fc.weight"], before["net.fc.weight"])


def test_adapt_batch_norm_moves_only_the_statistics_while_frozen(tiny_cfg) -> None:
    """model.adapt_batch_norm=true (AdaBN): during the head-only epoch the backbone's batch-norm
    running statistics follow the new product, every weight of the backbone stays the source's."""
    before, after, body = _head_only_epoch_from_another_product(
        tiny_cfg, "model.adapt_batch_norm=true"
    )
    stats = [k for k in body if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in body if k not in stats and not k.endswith("num_batches_tracked")]
    assert stats and weights
    assert all(torch.equal(after[k], before[k]) for k in weights)
    assert all(not torch.equal(after[k], before[k]) for k in stats)
