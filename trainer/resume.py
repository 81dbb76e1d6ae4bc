"""``resume: auto``: a run started again in its own folder continues where it stopped.

A preempted or killed job is restarted with the same command and the same run folder (a
requeued SLURM job has the same job id; ``scripts/slurm/train.sbatch`` and the SLURM launcher
derive the folder from it). The newest complete checkpoint of that folder is then restored by
Lightning with the weights, optimizer, scheduler, epoch and step, callback states and, through
``RngState`` below, the random generators.

Candidates are ``checkpoints/last.ckpt`` (every epoch) and Lightning's own ``hpc_ckpt_N.ckpt``
(written on SLURM's requeue signal into ``trainer.default_root_dir``). Lightning restores the hpc
file by itself only when no ``ckpt_path`` is given; we pass the newest of all candidates
explicitly, so the two mechanisms never disagree about where to continue from.
"""

from __future__ import annotations

import logging
import random
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from trainer.errors import ConfigError

log = logging.getLogger(__name__)

RESUME_MODES = ("auto", "never")


def is_complete(path: Path) -> bool:
    """Cheap integrity check: ``torch.save`` writes a zip whose directory is at the very end."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def resume_candidates(run_dir: Path) -> list[Path]:
    """Checkpoints of ``run_dir`` a run may continue from, newest first."""
    found = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    found = [p for p in found if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def auto_resume_path(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in ``run_dir``, or None for a fresh start."""
    run_dir = Path(run_dir)
    for stale in [*run_dir.glob("checkpoints/.*.tmp"), *run_dir.glob(".hpc_ckpt_*.tmp")]:
        stale.unlink(missing_ok=True)  # AtomicCheckpointIO's half-written file of a killed run
    for path in resume_candidates(run_dir):
        if is_complete(path):
            return path
        log.warning("Skipping incomplete checkpoint %s", path)
    return None


def resolve_ckpt_path(cfg: Any) -> str | None:
    """The checkpoint ``trainer.fit`` continues from: ``ckpt_path`` if given, else ``resume``."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    mode = cfg.get("resume", "auto")
    mode = "never" if mode in (None, False) else str(mode)
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume: '{mode}' is not one of auto | never")
    if mode == "never" or not cfg.get("train", True):
        return None
    path = auto_resume_path(cfg.paths.output_dir)
    if path is not None:
        log.info("Resuming from %s (resume=auto; resume=never starts afresh)", path)
    return str(path) if path else None


class RngState(L.Callback):
    """Store the random states in each checkpoint; set them back at the resumed fit's first batch.

    Lightning restores weights, optimizer, scheduler and loops, but not the generators that draw
    dropout (and anything else a model or callback draws while training). The states are those
    of the moment of the save: for ``last.ckpt`` the end of an epoch, after validation; for a
    checkpoint saved between two batches, that point. They are set back once, in the first
    ``on_train_batch_start`` of the resumed fit, not when Lightning loads the checkpoint nor at
    ``on_train_start``: until then, fit-start hooks (SampleImages augments its images; the
    module's ``on_train_start`` and any callback after this one) draw random numbers that the
    uninterrupted run drew at its own start, long before the checkpoint.
    That is exact because in the uninterrupted run nothing draws from these generators between a
    save and the next batch's start: the training order and the augmentations come from
    (seed, epoch, sample) (``trainer.data.sampler``), not from them. Keep this callback before
    others that draw in ``on_train_batch_start`` (Lightning calls callbacks in list order).

    Stored as tensors and plain lists so that the checkpoint still loads with
    ``weights_only=True``. Rank zero's state is saved (as it writes the checkpoint) and every rank
    gets it back; the CUDA state is the current device's.
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return {
            "torch": torch.get_rng_state(),
            "cuda": [torch.cuda.get_rng_state()] if cuda else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": [version, list(internal), gauss_next],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = dict(state_dict) or None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        state, self._to_restore = self._to_restore, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        if state.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"][0])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._to_restore = None  # a resumed fit with no batch left: not for the next fit
