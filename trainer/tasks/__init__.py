"""What a command does, one module each: ``train``, ``evaluate``, ``predict``, ``explain``,
``validate``, ``export``. Each imports the layers below it (data, models, checkpoint, evaluation,
history, export, utils) and never another task; ``train.py``, ``eval.py``, ``predict.py`` and
``scripts/`` are thin Hydra entries over them. (The modules, not their functions, are the public
names here: a function named like its module would shadow it.)
"""

__all__ = ["evaluate", "explain", "export", "predict", "train", "validate"]
