"""An anomaly model's training split must hold good images only.

An anomaly model (``model=patchcore``) learns what good images look like and leaves every other
image out of its memory bank. Defect images in its training split are then images the run
neither learns from nor tests on: most likely a data set that still needs
``data.train_classes=[good]``. ``data.validate`` decides what happens, as for the other data
checks: strict refuses the run, warn logs one line, off says nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from trainer.errors import DataError

log = logging.getLogger(__name__)


def check_anomaly_training(model: Any, datamodule: Any) -> None:
    """Warn about (or, under ``data.validate=strict``, refuse) defect images in the training
    split of an anomaly model; a classifier passes untouched."""
    if getattr(model, "kind", None) != "anomaly":
        return
    mode = str(getattr(datamodule, "validate", "warn")).lower()
    good = model.class_names[model.good_index]
    train = datamodule.scan.counts().get("train", {})
    others = {name: n for name, n in train.items() if name != good and n}
    if not others or mode == "off":
        return
    listed = ", ".join(f"{n} '{name}'" for name, n in sorted(others.items()))
    message = (
        f"data: the training split of '{datamodule.dataset_root}' holds {listed} besides "
        f"'{good}', which an anomaly model leaves out of its memory bank (used nowhere: not "
        f"in val or test either); set data.train_classes=[{good}]"
    )
    if mode == "strict":
        raise DataError(f"data.validate=strict: {message}")
    log.warning("%s", message)
