"""Lightning's MLFlowLogger, with one clear line when MLflow is not installed."""

from __future__ import annotations

import importlib.util
from typing import Any

from trainer.errors import ConfigError


def mlflow_available() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def mlflow_logger(**kwargs: Any) -> Any:
    """``lightning.pytorch.loggers.MLFlowLogger(**kwargs)``; ConfigError when mlflow is missing."""
    if not mlflow_available():
        raise ConfigError(
            "logger=mlflow: the mlflow package is not installed; pip install 'inspection-trainer[mlflow]' "
            "(or choose logger=tensorboard or logger=csv)"
        )
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(**kwargs)
