"""A run killed and started again ends as the run never interrupted: weight for weight.

The reference is one uninterrupted run with everything that draws random numbers switched on:
augmentation (a flip per image, seeded by (run seed, epoch, sample)), dropout, the head-only
first epoch with its batch-norm statistics, and SampleImages, which augments images at fit start.
On the CPU with ``trainer.deterministic=true`` the killed run must end bit-identical to it, with
loader worker processes too, and a run resumed from the middle of an epoch (``hpc_ckpt``) sees
that epoch's remaining batches.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import timm
import torch
from lightning.pytorch.loops.progress import _BatchProgress, _Progress
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from torchvision.transforms import v2

from tests.conftest import ROOT
from tests.helpers.runs import env, tiny_args, train_cmd
from trainer.callbacks.backbone_freeze import BackboneFreeze
from trainer.callbacks.rng_state import RngState
from trainer.checkpoint.read import load_checkpoint
from trainer.data.datamodule import ImageFolderDataModule
from trainer.data.sampler import EpochShuffle, fit_position
from trainer.models.classifier import ImageClassifier
from trainer.models.schedule import warmup_cosine

EPOCHS, BATCHES = 3, 3  # 48 training images, 16 a batch
VAL_TAGS = ("val/loss", "val/acc", "val/f1")
# One thread a process: on two shared cores torch's OpenMP threads spin against the other
# processes (a run took 10-20x longer); the runs compared all have the same.
ENV = {**env(), "OMP_NUM_THREADS": "1"}
# Images decoded by two loader processes, as for an image folder not cached in memory
WORKERS = ("data.num_workers=2", "data.cache_in_memory=false")


def exact_args(tmp: Path, run: Path, *extra: str) -> list[str]:
    return tiny_args(
        tmp,
        "trainer.deterministic=true",
        f"trainer.max_epochs={EPOCHS}",
        "test=false",
        f"model.pretrained_path={tmp / 'pretrained.pth'}",  # "pretrained": a head-only epoch
        "model.freeze_backbone_epochs=1",
        "model.drop_rate=0.2",
        "data.augment=[{_target_:torchvision.transforms.v2.RandomHorizontalFlip}]",
        "callbacks.sample_images={_target_:trainer.callbacks.sample_images.SampleImages,"
        "num_images:8}",
        f"hydra.run.dir={run}",
        *extra,
    )


def train(args: list[str]) -> subprocess.CompletedProcess:
    """``python train.py args`` to its end or its kill."""
    return subprocess.run(
        train_cmd(args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=240
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the uninterrupted run's data, weights and run (``reference``)."""
    tmp = tmp_path_factory.mktemp("resume_exact")
    torch.save(
        timm.create_model("test_resnet", num_classes=10).state_dict(), tmp / "pretrained.pth"
    )
    done = train(exact_args(tmp, tmp / "reference"))
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp


def final_val_metrics(run: Path) -> dict[str, float]:
    """The last validation figures the run logged (a resumed run adds event files: the newest)."""
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {
        tag: max(events.Scalars(tag), key=lambda e: (e.step, e.wall_time)).value for tag in VAL_TAGS
    }


def assert_same_as_reference(tmp: Path, run: Path, reference: str = "reference") -> None:
    ref = load_checkpoint(tmp / reference / "checkpoints" / "last.ckpt")
    got = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert (got["epoch"], got["global_step"]) == (EPOCHS - 1, EPOCHS * BATCHES)
    differ = [k for k, v in ref["state_dict"].items() if not torch.equal(v, got["state_dict"][k])]
    assert not differ, f"{len(differ)} of {len(ref['state_dict'])} tensors differ: {differ[:4]}"
    assert final_val_metrics(run) == final_val_metrics(tmp / reference)


def kill_twice_args(tmp: Path, run: Path, *extra: str) -> list[str]:
    return exact_args(
        tmp,
        run,
        "+callbacks.kill._target_=tests.helpers.slow_batches.KillAt",
        f"+callbacks.kill.marker_dir={run / 'markers'}",
        # right after epoch 0's last.ckpt; then after an optimizer step of epoch 2
        "+callbacks.kill.points=[[1,0],[2,1]]",
        *extra,
    )


def run_killed_twice(args: list[str], run: Path) -> None:
    for attempt, (resumes, killed_at) in enumerate([(False, 0), (True, 1), (True, None)]):
        # output to a file, not a pipe: a killed run's loader workers, orphaned, hold a pipe
        # open until they notice (up to 5 s); they exit by themselves
        log = run.parent / f"{run.name}_{attempt}.log"
        with open(log, "w") as out:
            proc = subprocess.run(
                train_cmd(args), cwd=ROOT, env=ENV, stdout=out, stderr=out, timeout=240
            )
        output = log.read_text()
        assert proc.returncode == (-signal.SIGKILL if killed_at is not None else 0), output
        assert ("Resuming from" in output) == resumes, output
        if killed_at is not None:
            assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == killed_at, attempt


@pytest.mark.slow
def test_killed_after_an_epoch_and_mid_epoch_it_ends_as_never_interrupted(
    reference: Path,
) -> None:
    run = reference / "killed_twice"
    run_killed_twice(kill_twice_args(reference, run), run)
    assert_same_as_reference(reference, run)


@pytest.mark.slow
def test_with_loader_workers_a_killed_run_ends_as_never_interrupted(reference: Path) -> None:
    """Persistent workers carry on from epoch to epoch, a resumed run starts new ones: the
    augmentations must not depend on them (nor on how many there are: the reference without
    workers is the same run)."""
    done = train(exact_args(reference, reference / "reference_workers", *WORKERS))
    assert done.returncode == 0, done.stdout + done.stderr
    run = reference / "killed_twice_workers"
    run_killed_twice(kill_twice_args(reference, run, *WORKERS), run)
    assert_same_as_reference(reference, run, "reference_workers")
    assert_same_as_reference(reference, reference / "reference_workers")


@pytest.mark.slow
def test_a_killed_run_started_again_finishes(reference: Path) -> None:
    """SIGKILL from outside at a moment of the clock's choosing, as a preemption would."""
    run = reference / "killed"
    args = exact_args(
        reference,
        run,
        "+callbacks.slow._target_=tests.helpers.slow_batches.Slow",
        "+callbacks.slow.seconds=0.4",
    )
    last = run / "checkpoints" / "last.ckpt"
    with open(reference / "first.log", "w") as log:
        proc = subprocess.Popen(train_cmd(args), cwd=ROOT, env=ENV, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 180
            while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert last.exists(), (reference / "first.log").read_text()[-3000:]
            time.sleep(0.6)  # inside the next epoch (3 batches of >= 0.4 s each)
            assert proc.poll() is None, "the run finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(30)
    assert load_checkpoint(last)["epoch"] < EPOCHS - 1

    again = train(args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"Resuming from {last}" in again.stdout + again.stderr
    assert "RngState" in load_checkpoint(last)["callbacks"]
    assert_same_as_reference(reference, run)


# ---------------------------------------------------------------- the training order


def order(sampler: EpochShuffle, epoch: int | None = None) -> list[int]:
    """The sample indices of one pass (the sampler yields (index, epoch) pairs)."""
    if epoch is not None:
        sampler.set_epoch(epoch)
    pairs = list(sampler)
    assert all(e == sampler.epoch for _, e in pairs), "each index carries its epoch"
    return [i for i, _ in pairs]


def test_the_training_order_is_a_function_of_the_seed_and_the_epoch() -> None:
    sampler = EpochShuffle(50, seed=7)
    first = order(sampler)
    torch.manual_seed(123)
    assert order(sampler) == first, "the global generator must play no part"
    second = order(sampler, 1)
    assert second != first and sorted(second) == list(range(50))
    resumed = EpochShuffle(50, seed=7)  # a new process, set to epoch 1 by Lightning
    assert order(resumed, 1) == second
    assert order(EpochShuffle(50, seed=8)) != first


@pytest.mark.parametrize("size", [10, 11])
def test_under_ddp_each_rank_gets_its_shard_of_one_permutation(size: int) -> None:
    """DistributedSampler's contract, which Lightning then keeps (it replaces any sampler that
    is not one): as many indices on every rank, disjoint shards of one permutation of
    (seed, epoch), padded by repeating its first indices."""

    def shards(epoch: int, seed: int = 7) -> list[list[int]]:
        ranks = [EpochShuffle(size, seed=seed, num_replicas=2, rank=r) for r in (0, 1)]
        return [order(sampler, epoch) for sampler in ranks]

    assert isinstance(EpochShuffle(size, num_replicas=2, rank=1), DistributedSampler)
    first = shards(0)
    padding = 2 * math.ceil(size / 2) - size
    assert [len(s) for s in first] == [math.ceil(size / 2)] * 2
    assert len(EpochShuffle(size, num_replicas=2, rank=0)) == math.ceil(size / 2)
    assert sorted(set(first[0] + first[1])) == list(range(size))
    assert len(set(first[0]) & set(first[1])) == padding  # only the repeated index
    assert shards(0) == first
    assert shards(1) != first and shards(0, seed=8) != first
    alone = EpochShuffle(size, seed=7)  # one process: the same permutation, unsharded
    assert set(order(alone, 1)) == set(shards(1)[0] + shards(1)[1])


def boards(pcb_root: Path, workers: int, batch_size: int = 8) -> ImageFolderDataModule:
    """The shared tiny boards at 32 px, both flips on, ready for ``train_dataloader``."""
    flips = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    dm = ImageFolderDataModule(
        pcb_root, batch_size=batch_size, num_workers=workers, cache_in_memory=True, augment=flips
    )
    dm.set_preprocessing({"resize": [32, 32], "interpolation": "bilinear"})
    dm.setup("fit")
    return dm


def epoch_batches(loader: DataLoader, epoch: int) -> list[tuple[Tensor, Tensor]]:
    loader.sampler.set_epoch(epoch)
    return [(images, labels) for images, labels in loader]


def assert_same_batches(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for (images, labels), (images_e, labels_e) in zip(got, expected, strict=True):
        assert torch.equal(labels, labels_e) and torch.equal(images, images_e)


def test_a_sample_augments_alike_in_every_run_and_with_any_workers(pcb_root: Path) -> None:
    """The flips of sample i in epoch e depend on (seed, e, i) alone: not on the global
    generator, nor on whether the worker processes ran the epoch before (persistent workers
    of an uninterrupted run) or are new (a resumed run), nor on how many there are."""
    torch.manual_seed(5)
    expected = epoch_batches(boards(pcb_root, workers=0).train_dataloader(), 1)
    persistent = boards(pcb_root, workers=2).train_dataloader()
    epoch_batches(persistent, 0)
    torch.manual_seed(6)
    assert_same_batches(epoch_batches(persistent, 1), expected)
    assert_same_batches(epoch_batches(boards(pcb_root, workers=2).train_dataloader(), 1), expected)

    dataset = boards(pcb_root, workers=0).datasets["train"]
    raw = [dataset.images[i] for i in range(len(dataset))]
    again = [dataset[(i, 1)][0] for i in range(len(dataset))]
    other_epoch = [dataset[(i, 2)][0] for i in range(len(dataset))]
    assert all(torch.equal(a, dataset[(i, 1)][0]) for i, a in enumerate(again))
    assert not all(torch.equal(a, b) for a, b in zip(again, raw, strict=True)), "no flip at all"
    assert not all(torch.equal(a, b) for a, b in zip(again, other_epoch, strict=True))


def test_under_ddp_the_training_loader_shards_with_its_own_sampler(
    pcb_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dm = boards(pcb_root, workers=0)
    monkeypatch.setattr(dm, "_processes", lambda: (2, 1))
    loader = dm.train_dataloader()
    sampler = loader.sampler
    assert isinstance(sampler, EpochShuffle) and isinstance(sampler, DistributedSampler)
    assert (sampler.num_replicas, sampler.rank) == (2, 1)
    assert len(loader) == 48 // 2 // 8


@pytest.mark.parametrize("workers", [0, 2])
def test_loading_data_draws_nothing_from_the_global_generator(pcb_root: Path, workers: int) -> None:
    """Else the first batch after a resume would see other random numbers than the original
    run's: it is fetched, and augmented, before the random states are set back; and a resumed
    run starts its (persistent) loader workers at another moment than the uninterrupted one."""
    dm = boards(pcb_root, workers=workers, batch_size=16)
    train = dm.train_dataloader()
    assert isinstance(train.sampler, EpochShuffle)
    state = torch.get_rng_state()
    batches = [batch for batch in train]
    assert [len(batch) for batch in dm.val_dataloader()]
    assert torch.equal(torch.get_rng_state(), state)
    assert_same_batches([batch for batch in train], batches)


# ---------------------------------------------------------------- resuming mid-epoch


def lightning_at(
    epoch: int, ready: int, processed: int, completed: int, stage: str = "in"
) -> SimpleNamespace:
    """A stand-in for a Trainer whose fit loop counters are these, as Lightning restores them
    from a checkpoint before its own restart logic runs: ``epoch`` epochs processed, and the
    epoch ``stage``: "before" its start, "in" it, or "ended" (its ``on_train_epoch_end``); the
    batches of the latest epoch: ``ready`` fetched, ``processed`` stepped, ``completed``."""
    limit = 6
    batches = _BatchProgress()
    for tracker, offset in ((batches.current, 0), (batches.total, epoch * limit)):
        tracker.ready, tracker.started = offset + ready, offset + ready
        tracker.processed, tracker.completed = offset + processed, offset + completed
    epochs = _Progress()
    started = epoch + (stage != "before")
    epochs.current.ready, epochs.current.started = started, started
    epochs.current.processed = epoch + (stage == "ended")
    epochs.current.completed = epoch
    loop = SimpleNamespace(
        epoch_progress=epochs,
        epoch_loop=SimpleNamespace(batch_progress=batches),
        _combined_loader=SimpleNamespace(limits=[limit]),
    )
    return SimpleNamespace(fit_loop=loop, num_training_batches=float("inf"))


def test_a_mid_epoch_restart_skips_the_batches_already_done() -> None:
    assert fit_position(None) is None
    assert fit_position(lightning_at(0, 0, 0, 0, "before")) == (0, 0)  # a fresh fit
    assert fit_position(lightning_at(2, 0, 0, 0)) == (2, 0)  # an epoch's start
    # saved in on_train_batch_end of batch 2: Lightning counts it done and resumes at batch 3,
    # as it does once its restart logic has run (completed then caught up)
    assert fit_position(lightning_at(1, 3, 3, 2)) == (1, 3)
    assert fit_position(lightning_at(1, 3, 3, 3)) == (1, 3)
    # saved inside batch 3's step (a signal): Lightning runs batch 3 again
    assert fit_position(lightning_at(1, 4, 3, 3)) == (1, 3)
    # saved in the epoch's last on_train_batch_end: Lightning goes on with the next epoch
    assert fit_position(lightning_at(1, 6, 6, 5)) == (2, 0)
    # last.ckpt after validation (on_validation_end): nothing left of the epoch (Lightning
    # then makes the next epoch's iterator); in on_train_epoch_end: the next epoch, whole
    assert fit_position(lightning_at(1, 6, 6, 6)) == (1, 6)
    assert fit_position(lightning_at(1, 6, 6, 6, "ended")) == (2, 0)

    sampler = EpochShuffle(50, seed=3, batch_size=4, position=lambda: (1, 3))
    full = order(EpochShuffle(50, seed=3), 1)
    assert order(sampler) == full[12:] and sampler.epoch == 1
    ranks = [EpochShuffle(50, seed=3, num_replicas=2, rank=r, batch_size=4) for r in (0, 1)]
    shards = [order(s, 1) for s in ranks]
    for rank, shard in enumerate(shards):
        skipping = EpochShuffle(
            50, 3, num_replicas=2, rank=rank, batch_size=4, position=lambda: (1, 2)
        )
        assert order(skipping) == shard[8:]


# ---------------------------------------------------------------- the head-only epochs


class SaveAt(L.Callback):
    """``trainer.save_checkpoint`` after batch ``batch`` of epoch ``epoch``: what Lightning's
    SLURM handler does on USR1 (``hpc_ckpt_N.ckpt``), here between two batches."""

    def __init__(self, path: Path, batch: int, epoch: int = 0) -> None:
        self.path, self.batch, self.epoch = path, batch, epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            trainer.save_checkpoint(self.path)


class SaveAtEpochEnd(L.Callback):
    """``trainer.save_checkpoint`` in ``on_train_epoch_end`` of epoch ``epoch``: where
    ModelCheckpoint writes ``last.ckpt`` when validation runs after every epoch."""

    def __init__(self, path: Path, epoch: int = 0) -> None:
        self.path, self.epoch = path, epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if trainer.current_epoch == self.epoch:
            trainer.save_checkpoint(self.path)


class Batches(L.Callback):
    """Every training batch as the model gets it, by (epoch, batch_idx)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.seen[(trainer.current_epoch, batch_idx)] = (batch[0].clone(), batch[1].clone())


def fit_boards(
    pcb_root: Path, workers: int, ckpt_path: Path | None, *callbacks: L.Callback
) -> ImageClassifier:
    L.seed_everything(0)
    dm = boards(pcb_root, workers)  # 48 images: 6 batches an epoch
    model = ImageClassifier(
        "test_resnet",
        dm.class_names,
        pretrained=False,
        input_size=32,
        drop_rate=0.2,
        optimizer=partial(torch.optim.SGD, lr=0.1),
        # sized by trainer.estimated_stepping_batches, which makes the training iterator before
        # Lightning restores its loops from the checkpoint
        scheduler=partial(warmup_cosine, warmup_fraction=0.2),
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[RngState(), *callbacks],
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("saved", ["mid_epoch", "epoch_end"])
def test_a_resumed_run_gets_the_remaining_batches_and_ends_the_same(
    pcb_root: Path, tmp_path: Path, one_thread: None, workers: int, saved: str
) -> None:
    """The resumed epoch's iterator must start where the checkpoint left the epoch: Lightning
    restores its counters, not the loader's position; and with worker processes it makes that
    iterator before it calls ``set_epoch``, so the sampler asks the trainer for both."""
    ckpt = tmp_path / "saved.ckpt"
    save = SaveAt(ckpt, batch=2, epoch=1) if saved == "mid_epoch" else SaveAtEpochEnd(ckpt, 0)
    first, resumed = Batches(), Batches()
    uninterrupted = fit_boards(pcb_root, workers, None, save, first)
    again = fit_boards(pcb_root, workers, ckpt, resumed)

    remaining = [3, 4, 5] if saved == "mid_epoch" else range(6)
    assert sorted(resumed.seen) == [(1, b) for b in remaining]
    for key, (images, labels) in resumed.seen.items():
        assert torch.equal(labels, first.seen[key][1]), key
        assert torch.equal(images, first.seen[key][0]), key
    expected = uninterrupted.state_dict()
    differ = [k for k, v in again.state_dict().items() if not torch.equal(v, expected[k])]
    assert not differ, differ[:4]


class WhatMoves(L.Callback):
    """Per training batch: did the backbone's weights and batch-norm statistics, and the head's
    weights, change; and were the batch norms in training mode."""

    def __init__(self) -> None:
        self.batches: dict[tuple[int, int], dict[str, bool]] = {}

    @staticmethod
    def _snapshot(model: ImageClassifier) -> dict[str, list[torch.Tensor]]:
        norms = [m for m in model.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return {
            "backbone": [p.detach().clone() for p in model.backbone_parameters()],
            "statistics": [m.running_mean.clone() for m in norms],
            "head": [p.detach().clone() for p in model.head.parameters()],
        }

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self._before = self._snapshot(pl_module)
        self._norms_train = all(
            m.training
            for m in pl_module.net.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        after = self._snapshot(pl_module)
        moved = {
            part: any(
                not torch.equal(a, b) for a, b in zip(self._before[part], after[part], strict=True)
            )
            for part in after
        }
        self.batches[(trainer.current_epoch, batch_idx)] = {
            **moved,
            "norms_train": self._norms_train,
        }


def _fit(ckpt_path: Path | None, *callbacks: L.Callback) -> None:
    L.seed_everything(0)
    model = ImageClassifier(
        "test_resnet",
        ["a", "b"],
        pretrained=False,
        input_size=32,
        freeze_backbone_epochs=1,
        optimizer=partial(torch.optim.SGD, lr=0.1),
    )
    model.pretrained_loaded = True  # the freeze applies to pretrained weights only
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8)
    loader = DataLoader(TensorDataset(images, torch.arange(24) % 2), batch_size=4)  # 6 batches
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[BackboneFreeze(), *callbacks],
    )
    trainer.fit(model, loader, ckpt_path=ckpt_path)


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see ENV
    yield
    torch.set_num_threads(threads)


def test_the_backbone_stays_frozen_after_a_mid_epoch_resume(
    tmp_path: Path, one_thread: None
) -> None:
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    first = WhatMoves()
    _fit(None, SaveAt(hpc, batch=2), first)
    resumed = WhatMoves()
    _fit(hpc, resumed)

    for run in (first, resumed):
        for (epoch, _), moved in run.batches.items():
            frozen = epoch == 0
            assert moved["head"]
            assert moved["backbone"] is not frozen, (epoch, moved)
            assert moved["statistics"] is not frozen, (epoch, moved)  # pretrained stats kept
            assert moved["norms_train"] is not frozen, (epoch, moved)
    assert sorted(resumed.batches) == [(0, 3), (0, 4), (0, 5), *((1, b) for b in range(6))]
