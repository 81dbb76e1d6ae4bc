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
import zipfile
from pathlib import Path
from typing import Any

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
