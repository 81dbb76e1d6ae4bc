"""One row per task run, from the task's config: what ``train.py`` and ``eval.py`` remember."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainer.history.store import config_digest, new_run_id, record_run
from trainer.utils.clock import now_utc
from trainer.utils.hydra_run import experiment_name, task_overrides
from trainer.utils.lineage import lineage

__all__ = ["remember"]


def remember(
    cfg: DictConfig,
    task: str,
    started: str,
    meta: Mapping[str, Any],
    metrics: Mapping[str, float],
    checkpoint: str | None,
    gate_result: str,
    fingerprint: str | None,
) -> None:
    """One row in the run history (rank zero only); a history switched off is skipped."""
    history = cfg.get("history") or {}
    if not history.get("path"):
        return
    info = lineage(cfg.paths.root_dir)
    record_run(
        history["path"],
        {
            "run_id": new_run_id(),
            "started_utc": started,
            "ended_utc": now_utc(),
            "task": task,
            "experiment": experiment_name(),
            "tags": list(cfg.get("tags") or []),
            "command": info["command"],
            "overrides": task_overrides(),
            "git_commit": info["git_commit"],
            "git_dirty": info["git_dirty"],
            "config_digest": config_digest(OmegaConf.to_container(cfg, resolve=True)),
            "data_fingerprint": fingerprint,
            "backbone": meta.get("backbone"),
            "metrics": dict(metrics),
            "checkpoint": checkpoint,
            "gate": gate_result,
            "output_dir": str(cfg.paths.output_dir),
        },
        journal_mode=history.get("journal_mode", "wal"),
    )
