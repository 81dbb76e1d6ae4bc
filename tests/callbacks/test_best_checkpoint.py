"""The best checkpoint: an equal val/f1 with a lower val/loss replaces the kept one."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainer.callbacks.best_checkpoint import BestCheckpoint

F1 = [0.5, 1.0, 1.0, 1.0, 1.0]
LOSS = [0.9, 0.5, 0.3, 0.35, 0.25]


class Scripted(L.LightningModule):
    """Logs each epoch's val/f1 and val/loss from the lists above."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
        return self.layer(batch[0]).sum()

    def validation_step(self, batch: list[torch.Tensor], index: int) -> None:
        self.log("val/f1", F1[self.current_epoch])
        self.log("val/loss", LOSS[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)

    val_dataloader = train_dataloader


def fit(tmp: Path, epochs: int, best: ModelCheckpoint, ckpt_path: Path | None = None) -> str:
    last = ModelCheckpoint(dirpath=tmp, filename="last", monitor=None)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[best, last],
        default_root_dir=tmp,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Scripted(), ckpt_path=ckpt_path)
    return Path(trainer.checkpoint_callback.best_model_path).name


def best(tmp: Path, **kwargs) -> BestCheckpoint:
    return BestCheckpoint(
        dirpath=tmp,
        filename="epoch_{epoch:03d}",
        monitor="val/f1",
        mode="max",
        auto_insert_metric_name=False,
        **kwargs,
    )


def test_a_tie_goes_to_the_lower_loss_and_only_a_lower_one(tmp_path: Path) -> None:
    # f1 ties from epoch 1 on; losses 0.5, 0.3, 0.35, 0.25: epochs 2 and then 4 take over
    assert fit(tmp_path / "a", 3, best(tmp_path / "a")) == "epoch_002.ckpt"
    assert fit(tmp_path / "b", 5, best(tmp_path / "b")) == "epoch_004.ckpt"
    assert sorted(p.name for p in (tmp_path / "b").glob("epoch_*")) == ["epoch_004.ckpt"]


def test_without_a_tie_break_the_first_of_equal_scores_stays(tmp_path: Path) -> None:
    lightning_rule = ModelCheckpoint(
        dirpath=tmp_path / "a",
        filename="epoch_{epoch:03d}",
        monitor="val/f1",
        mode="max",
        auto_insert_metric_name=False,
    )
    assert fit(tmp_path / "a", 5, lightning_rule) == "epoch_001.ckpt"
    assert fit(tmp_path / "b", 5, best(tmp_path / "b", tie_break=None)) == "epoch_001.ckpt"


def test_a_resumed_run_keeps_the_tie_values(tmp_path: Path) -> None:
    """Killed after epoch 3 (kept: epoch 2 at loss 0.3) and resumed: epoch 3's 0.35 must lose to
    the remembered 0.3 and epoch 4's 0.25 win, as in the run never interrupted."""
    assert fit(tmp_path, 4, best(tmp_path)) == "epoch_002.ckpt"
    resumed = fit(tmp_path, 5, best(tmp_path), ckpt_path=tmp_path / "last.ckpt")
    assert resumed == "epoch_004.ckpt" == fit(tmp_path / "once", 5, best(tmp_path / "once"))
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)["callbacks"]
    ties = next(v["tie_values"] for k, v in state.items() if k.startswith("BestCheckpoint"))
    assert ties == {str(tmp_path / "epoch_004.ckpt"): pytest.approx(0.25)}


def test_a_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="tie_break_mode='lowest'"):
        BestCheckpoint(monitor="val/f1", tie_break_mode="lowest")
