"""The training order and every augmentation as functions of the seed, the epoch and the sample,
so a resumed run sees the batches the uninterrupted run saw, with any number of processes.

torch's RandomSampler (``shuffle=True``) and a DataLoader without a generator draw from the global
torch generator each epoch, so an epoch's order depends on everything that drew before it
(augmentations, dropout, callbacks) and a resumed run, which draws otherwise at its start, gets
other batches. Augmentations drawn from a process's global generator depend on what that process
drew before: persistent loader workers carry theirs from epoch to epoch, a resumed run starts new
ones. So ``EpochShuffle`` draws the order from (seed, epoch) and yields ``(index, epoch)`` pairs,
and ``ImageSamples`` seeds each pair's augmentation with ``augment_seed(seed, epoch, index)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

Position = tuple[int, int]  # (epoch, batches of it already done)
_U64 = (1 << 64) - 1


def run_seed() -> int:
    """The run's seed as ``L.seed_everything`` records it (``PL_GLOBAL_SEED``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def loader_generator() -> torch.Generator:
    """A DataLoader's own generator: worker seeds drawn from it leave the global one alone."""
    return torch.Generator().manual_seed(run_seed())


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _U64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _U64
    return x ^ (x >> 31)


def augment_seed(seed: int, epoch: int, index: int) -> int:
    """32 well-spread bits of (seed, epoch, index): the torch seed of one sample's augmentation.

    torch's CPU generator keeps 32 bits of a seed, so a plain sum or 64-bit packing would give
    neighbouring samples or epochs related streams; splitmix64 (1 us in Python) spreads them.
    """
    h = _splitmix64(seed & _U64)
    h = _splitmix64(h ^ (epoch & _U64))
    return _splitmix64(h ^ (index & _U64)) >> 32


def fit_position(trainer: Any) -> Position | None:
    """(epoch, batches of it already done) that a training iterator started now must serve;
    None without a Trainer.

    Lightning restores its loop counters from a checkpoint, not the loader's position: a fit
    resumed mid-epoch (``hpc_ckpt``) runs the epoch's remaining number of batches from a fresh
    iterator, and it calls ``set_epoch`` for the resumed epoch only after making that iterator.
    Hence both, read here from the counters, by the sampler at ``__iter__``. Through
    ``FitLoader`` that is the epoch's first fetch, after the loops' restart logic ran; the answer
    is the same before it (a plain DataLoader with workers starts in ``FitLoop.setup_data``), as
    this mirrors that logic (``_TrainingEpochLoop.reset``): the batch counters are the epoch's
    only while it is under way (started, not processed); a batch whose ``on_train_batch_end`` ran
    (completed one short of processed) counts as done, and if it was the epoch's last the next
    epoch starts; a batch cut short inside its step is run again.
    """
    loop = getattr(trainer, "fit_loop", None)
    if loop is None:
        return None
    epochs = loop.epoch_progress.current
    epoch = int(epochs.processed)
    if epochs.started <= epoch:  # between epochs (a fresh fit; last.ckpt of on_train_epoch_end):
        return epoch, 0  # the batch counters, if any, are those of the epoch before
    batches = loop.epoch_loop.batch_progress
    done, total = int(batches.current.completed), batches.total
    if total.ready == total.started == total.processed == total.completed + 1:
        done += 1
        limits = getattr(getattr(loop, "_combined_loader", None), "limits", None)
        per_epoch = limits[0] if limits else trainer.num_training_batches
        if done >= per_epoch:
            return epoch + 1, 0
    return epoch, done


class EpochShuffle(DistributedSampler):
    """``(index, epoch)`` pairs: this process's shard of a permutation drawn from (seed, epoch),
    or, with ``weights``, of ``size`` indices drawn with replacement in proportion to them.

    A DistributedSampler, so that Lightning keeps it under DDP (it replaces any other training
    sampler with its own) and calls ``set_epoch`` on it; with DistributedSampler's contract:
    every rank gets ``ceil(size / num_replicas)`` indices, disjoint shards of one permutation
    padded by repeating its first indices. One process: the whole permutation.

    Args:
        size: number of samples.
        seed: None takes the run's seed (``run_seed``).
        num_replicas, rank: the processes sharing the data, and this one.
        batch_size: the loader's, to skip whole batches (see ``position``).
        position: called at each ``__iter__``: (epoch, batches already done), or None for
            (``set_epoch``'s epoch, 0). The data module passes ``fit_position`` of its Trainer,
            so a fit resumed mid-epoch goes on with exactly that epoch's remaining batches.
        weights: one non-negative weight per sample (``balanced_weights``): the epoch is
            ``torch.multinomial(weights, draws, replacement=True)``, the draw torch's
            WeightedRandomSampler makes. Not that sampler itself: its draw comes from a generator
            that runs on from epoch to epoch (a resumed run would draw other epochs), and
            Lightning would wrap it in a DistributedSamplerWrapper, which makes each process
            draw the whole epoch and keep a share. Here the draw is of (seed, epoch), once per
            epoch before the first batch: no per-step work.
        draws: items per epoch with ``weights`` (None: ``size``); ``balanced_epoch`` gives the
            oversampling epoch, in which every class is drawn as often as the largest has images.
    """

    def __init__(
        self,
        size: int,
        seed: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        batch_size: int = 1,
        position: Callable[[], Position | None] | None = None,
        weights: Sequence[float] | None = None,
        draws: int | None = None,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not one of {num_replicas} processes")
        if weights is not None and (len(weights) != int(size) or min(weights, default=1) < 0):
            raise ValueError(f"weights: need {size} non-negative weights, got {len(weights)}")
        seed = run_seed() if seed is None else int(seed)
        self.draws = int(size) if weights is None or draws is None else int(draws)
        # DistributedSampler sizes each rank's share from len(dataset): the epoch's draws
        super().__init__(range(self.draws), num_replicas, rank, shuffle=True, seed=seed)
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.position = position
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    def shard(self, epoch: int) -> list[int]:
        """This rank's indices of ``epoch``, in order."""
        # torch's CPU generator keeps 32 bits of a seed: mix (seed, epoch) into 32 spread bits
        # (DistributedSampler's seed + epoch gives seed 1's epoch 1 the order of seed 2's epoch 0)
        mixed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(mixed)
        if self.weights is not None and self.size:
            order = torch.multinomial(self.weights, self.draws, True, generator=generator).tolist()
        else:
            order = torch.randperm(self.size, generator=generator).tolist()
        padding = self.total_size - len(order)
        if padding and order:
            order += (order * math.ceil(padding / len(order)))[:padding]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        where = self.position() if self.position is not None else None
        epoch, done = where if where is not None else (self.epoch, 0)
        self.epoch = int(epoch)
        start = int(done) * self.batch_size
        return iter([(index, self.epoch) for index in self.shard(self.epoch)[start:]])


def balanced_epoch(labels: Sequence[int]) -> int:
    """Items of a class-balanced epoch: as many draws of every class as the largest class has
    images (random oversampling, as imbalanced-learn's RandomOverSampler sizes its classes), so
    that an epoch still shows the largest class about once, as a shuffled epoch would; drawing
    only ``len(labels)`` would show it ``1 / classes`` as often, and starve what the rare classes
    are told apart from."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64)) if len(labels) else np.zeros(0)
    present = counts[counts > 0]
    return int(present.max() * len(present)) if len(present) else 0


def balanced_weights(labels: Sequence[int]) -> list[float]:
    """Per-sample weights that draw every class equally often: 1 / the size of its class."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64)) if len(labels) else np.zeros(0)
    return [1.0 / counts[label] for label in labels]


class FitLoader(DataLoader):
    """A DataLoader whose iterator starts at its first batch, not when ``iter`` is called.

    Lightning makes the training iterator early: in ``estimated_stepping_batches`` (a scheduler
    sized by the run's steps, from ``configure_optimizers``), before it restores the loops from a
    checkpoint; and on a resume before it calls ``set_epoch``. With worker processes a DataLoader
    hands its first indices out right then, to the sampler's position of that moment. Started at
    the first ``next``, the sampler sees the trainer as the batch will (``fit_position``).
    """

    def __iter__(self) -> Iterator[Any]:
        return _StartOnNext(super().__iter__)


class _StartOnNext(Iterator[Any]):
    def __init__(self, start: Callable[[], Iterator[Any]]) -> None:
        self._start: Callable[[], Iterator[Any]] | None = start
        self._iterator: Iterator[Any] | None = None

    def __next__(self) -> Any:
        if self._iterator is None:
            assert self._start is not None
            self._iterator, self._start = self._start(), None
        return next(self._iterator)
