"""DDP on the CPU (gloo): two processes train like one process with the same global batch.

Parity holds only where the maths is the same: one optimizer step per epoch over the whole
training set (global batch = 48 = 2 x 24), no augmentation, the same seed, and a backbone without
batch norm (``test_efficientnet_gn``: group norm; batch norm would see 24 images per process
instead of 48, and SyncBatchNorm is GPU-only). Under those conditions DDP's gradient average
equals the single-process mean and the runs agree to float rounding.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import hydra
import pytest
import timm
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import compose_cfg
from tests.helpers.runs import run_train, tiny_args
from trainer.checkpoint.read import classifier_from_checkpoint, load_checkpoint
from trainer.errors import ConfigError
from trainer.evaluation.predictions import predict
from trainer.evaluation.report import evaluate_model
from trainer.history.store import RunHistory

# Tolerance of the parity: acc and F1 are counts over 16 validation images (exact); weights after
# three SGD steps differ by float32 rounding of gradients summed in another order.
WEIGHT_ATOL = 1e-5


def scalars(run: Path, tag: str) -> list[float]:
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["shuffle", "balanced"])
def test_ddp_two_processes_match_one_process(tmp_path: Path, sampler: str) -> None:
    """With ``data.sampler=balanced`` too: the processes share one weighted draw (Lightning keeps
    our DistributedSampler), so the epoch's images, and the weights, are the one process's."""
    weights = tmp_path / "pretrained.pth"  # "pretrained": the head-only first epoch happens
    torch.save(timm.create_model("test_efficientnet_gn", num_classes=10).state_dict(), weights)
    common = tiny_args(
        tmp_path,
        "model.backbone=test_efficientnet_gn",
        f"model.pretrained_path={weights}",
        "model.freeze_backbone_epochs=1",
        "trainer.max_epochs=3",
        # SGD: a rounding difference stays a rounding difference (Adam's first steps are
        # sign-like and would turn a 1e-9 gradient difference into a full step)
        "model.optimizer._target_=torch.optim.SGD",
        "model.optimizer.lr=0.05",
        f"data.sampler={sampler}",
    )
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    out = run_train(
        [*common, "trainer=ddp", "trainer.devices=2", "data.batch_size=24", f"hydra.run.dir={ddp}"]
    )
    run_train([*common, "trainer=cpu", "data.batch_size=48", f"hydra.run.dir={single}"])

    assert "global batch 48" in out.stdout + out.stderr
    # One run folder, written by rank zero only: nothing else under the log folder.
    assert not (tmp_path / "logs" / "train").exists()
    assert (ddp / ".hydra" / "config.yaml").is_file()
    writers = {p.name.split(".")[4] for p in (ddp / "tensorboard").glob("events.out.tfevents.*")}
    assert len(writers) == 1, f"event files from several processes: {writers}"

    for tag in ("val/acc", "val/f1", "test/acc", "test/f1"):  # synchronised over both processes
        assert scalars(ddp, tag) == pytest.approx(scalars(single, tag), abs=1e-6), tag
    assert (ddp / "metrics.json").is_file() and (single / "metrics.json").is_file()
    a = load_checkpoint(ddp / "checkpoints" / "last.ckpt")
    b = load_checkpoint(single / "checkpoints" / "last.ckpt")
    # an epoch is one global batch of 48 shuffled images; a balanced epoch draws every class as
    # often as the largest class has images (trainer.data.sampler.balanced_epoch): counted here
    train_counts = b["trainer_metadata"]["data"]["counts"]["train"]
    draws = 48 if sampler == "shuffle" else max(train_counts.values()) * len(train_counts)
    assert a["global_step"] == b["global_step"] == 3 * math.ceil(draws / 48)
    worst = max((a["state_dict"][k] - v).abs().max().item() for k, v in b["state_dict"].items())
    assert worst <= WEIGHT_ATOL, f"weights differ by up to {worst:.2e}"


@pytest.mark.slow
def test_ddp_with_the_defaults_finishes_with_one_process_figures(tmp_path: Path) -> None:
    """``test=true`` under DDP: the test step, operating point, report, history and gate all run,
    and every figure is what one process computes on the same checkpoint. 15 val and 15 test
    images on 2 processes: a padding sampler would score one image twice."""
    run, history = tmp_path / "ddp", tmp_path / "history.sqlite"
    run_train(
        tiny_args(
            tmp_path,
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.max_epochs=2",
            "data.batch_size=4",
            "data.generator.num_val=15",
            "data.generator.num_test=15",
            f"history.path={history}",
            "gate.min={test/acc:0.0}",
            f"hydra.run.dir={run}",
        )
    )
    report = json.loads((run / "metrics.json").read_text())
    assert report["gate"]["passed"] is True, report["gate"]
    (best,) = (run / "checkpoints").glob("epoch_*.ckpt")
    ckpt = load_checkpoint(best)
    assert ckpt["trainer_metadata"]["operating_point"]["threshold"] > 0
    (row,) = RunHistory(history).runs()
    assert row["checkpoint"] == str(best)

    # the reference: one process, the whole split, the best checkpoint
    model = classifier_from_checkpoint(ckpt, best)
    cfg = compose_cfg(
        [
            *tiny_args(tmp_path, "data.batch_size=4"),
            "data.generator.num_val=15",
            "data.generator.num_test=15",
        ],
        tmp_path,
    )
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.set_preprocessing(model.preprocessing)
    single = evaluate_model(model, datamodule, "test", "good", 0.99, torch.device("cpu"))
    assert single.evaluation.scalars["test/num_images"] == 15
    for tag in ("test/acc", "test/f1", "test/auroc", "test/auroc_pass_fail"):
        (logged,) = scalars(run, tag)  # the DDP test step's figure
        assert logged == pytest.approx(single.metrics[tag], abs=1e-6, nan_ok=True), tag
        # what the run returned and recorded: the test step's, gathered from both processes
        assert row["metrics"][tag] == pytest.approx(single.metrics[tag], abs=1e-6), tag
    # the DDP validation of the kept epoch, as the best checkpoint recorded it, is one process's
    recorded = ckpt["trainer_metadata"]["metrics"]
    val = evaluate_model(model, datamodule, "val", "good", 0.99, torch.device("cpu"))
    assert val.evaluation.scalars["val/num_images"] == 15
    for tag in ("val/acc", "val/f1", "val/auroc"):
        assert recorded[tag] == pytest.approx(val.metrics[tag], abs=1e-6), tag
    logits, target = predict(
        model, datamodule.eval_dataloader("test"), torch.device("cpu"), torch.arange(4)
    )
    (loss,) = scalars(run, "test/loss")
    assert loss == pytest.approx(float(F.cross_entropy(logits, target)), abs=1e-5)
    # the figures the run returns and records are the best checkpoint's, not the last epoch's
    assert row["metrics"]["val/f1"] == pytest.approx(ckpt["trainer_metadata"]["metrics"]["val/f1"])


def test_plain_ddp_with_a_frozen_backbone_is_refused(tiny_cfg) -> None:
    """Freezing after the DDP wrap needs find_unused_parameters: say so before the obscure error."""
    from trainer.utils.distributed import check_freeze_under_ddp

    cfg = tiny_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.strategy=ddp")
    trainer = hydra.utils.instantiate(cfg.trainer)
    model = hydra.utils.instantiate(cfg.model, class_names=["a", "b"])
    model.pretrained_loaded = True
    with pytest.raises(ConfigError, match="ddp_find_unused_parameters_true"):
        check_freeze_under_ddp(trainer, model)
    model.hparams.freeze_backbone_epochs = 0
    check_freeze_under_ddp(trainer, model)


def test_batch_rule_scales_the_lr_when_asked(tiny_cfg) -> None:
    from trainer.utils.distributed import apply_batch_rule

    cfg = tiny_cfg(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=4",
        "trainer.accumulate_grad_batches=2",
        "data.batch_size=16",
        "scale_lr=true",
        "reference_batch_size=32",
        "model.optimizer.lr=0.001",
    )
    trainer = hydra.utils.instantiate(cfg.trainer)
    model = hydra.utils.instantiate(cfg.model, class_names=["a", "b"])
    rule = apply_batch_rule(cfg, trainer, model)
    assert rule["global_batch_size"] == 16 * 4 * 2
    assert model.optimizer_factory.keywords["lr"] == pytest.approx(0.001 * 128 / 32)
    cfg.scale_lr = False
    model = hydra.utils.instantiate(cfg.model, class_names=["a", "b"])
    assert apply_batch_rule(cfg, trainer, model)["lr"] == pytest.approx(0.001)
    cfg.scale_lr, cfg.reference_batch_size = True, 0
    with pytest.raises(ConfigError, match="reference_batch_size"):
        apply_batch_rule(cfg, trainer, model)


def test_other_ranks_write_no_hydra_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer.utils.distributed import hydra_overrides_for_rank

    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert hydra_overrides_for_rank(["train.py"]) == []
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert hydra_overrides_for_rank(["train.py"]) == ["hydra.output_subdir=null"]
    assert hydra_overrides_for_rank(["train.py", "hydra.output_subdir=null"]) == []


@pytest.mark.slow
def test_ddp_fits_an_anomaly_model_with_one_process_figures(tmp_path: Path) -> None:
    """``experiment=pcb_anomaly`` under DDP with the defaults (``test=true``): PatchCore has no
    trainable parameter, which DistributedDataParallel refuses, so the processes run unwrapped;
    the bank gathers both processes' features, and the test figures are one process's on the
    same checkpoint (15 test images on 2 processes: no image scored twice)."""
    from trainer.checkpoint.read import load_model

    run = tmp_path / "ddp"
    common = [
        "experiment=pcb_anomaly",
        "model.backbone=resnet10t",
        "model.pretrained=false",
        "model.input_size=64",
        "model.coreset_fraction=0.5",
        "data.batch_size=4",
        "data.generator.num_val=15",
        "data.generator.num_test=15",
    ]
    run_train(
        tiny_args(tmp_path, *common, "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={run}")
    )
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    (best,) = (run / "checkpoints").glob("epoch_*.ckpt")
    ckpt = load_checkpoint(best)
    good_train = ckpt["trainer_metadata"]["data"]["counts"]["train"]["good"]
    patches = (64 // 8) ** 2  # layer2 of resnet10t: stride 8
    assert ckpt["trainer_metadata"]["anomaly"]["bank_size"] >= round(0.5 * good_train * patches)

    model = load_model(best)
    cfg = compose_cfg([*tiny_args(tmp_path, *common)], tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.set_preprocessing(model.preprocessing)
    single = evaluate_model(model, datamodule, "test", "good", 0.99, torch.device("cpu"))
    assert single.evaluation.scalars["test/num_images"] == 15
    assert "test/defect_recall_at_op" in single.metrics
    assert set(metrics) == set(single.metrics)
    for tag, value in single.metrics.items():
        assert metrics[tag] == pytest.approx(value, abs=1e-6, nan_ok=True), tag
