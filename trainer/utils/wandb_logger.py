"""Lightning's WandbLogger, with one clear line when W&B is missing or cannot log in, and the
run finished at the end of a task (``finish_run``).

The run starts when the logger is made, not at the first metric: a missing login is then one
line before any work, not a traceback from inside ``trainer.fit``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError


def wandb_available() -> bool:
    return importlib.util.find_spec("wandb") is not None


def wandb_logger(**kwargs: Any) -> Any:
    """``lightning.pytorch.loggers.WandbLogger(**kwargs)`` with its run started; ConfigError when
    wandb is missing, not logged in, or asked to upload checkpoints offline."""
    if not wandb_available():
        raise ConfigError(
            "logger=wandb: the wandb package is not installed; pip install "
            "'inspection-trainer[wandb]' (or choose logger=tensorboard or logger=csv)"
        )
    if kwargs.get("offline") and kwargs.get("log_model"):
        raise ConfigError(
            "logger.wandb.log_model: an offline run cannot upload checkpoints; give "
            "logger.wandb.log_model=false or logger.wandb.offline=false"
        )
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    Path(kwargs["save_dir"]).mkdir(parents=True, exist_ok=True)  # else W&B writes to /tmp
    logger = WandbLogger(**kwargs)
    try:
        logger.experiment  # noqa: B018 - starts the run (rank zero; the others get a dummy)
    except wandb.errors.UsageError as err:
        raise ConfigError(
            f"logger=wandb: {str(err).splitlines()[0].rstrip('.')}; or set WANDB_API_KEY, or "
            "give logger.wandb.offline=true (and upload later with `wandb sync`)"
        ) from err
    return logger


def finish_run() -> None:
    """Finish the W&B run, if one is open: Lightning leaves it open, so an offline run's file
    would stay incomplete until the process ends and a sweep's next job would log into it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
