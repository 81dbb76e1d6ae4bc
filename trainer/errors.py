"""Errors a user can cause: printed as one line by the entry points, never as a traceback.

Set ``TRAINER_FULL_ERROR=1`` (or ``HYDRA_FULL_ERROR=1``) to see the traceback anyway.
"""


class TrainerError(Exception):
    """Base class: the message alone must tell the user what is wrong and what to do."""


class ConfigError(TrainerError):
    """A config value, key or option is invalid."""


class DataError(TrainerError):
    """The data on disk cannot be used as asked (missing root, empty class, unreadable image)."""


class CheckpointError(TrainerError):
    """A checkpoint is missing, unreadable, or does not fit the data."""


class PretrainedWeightsError(TrainerError):
    """Pretrained weights were required but could not be loaded."""
