"""The LightningModule (``classifier``: a timm backbone with a new head), the backbone factory
and preprocessing (``backbone``), the learning-rate schedule (``schedule``).
"""

from trainer._exports import lazy

_EXPORTS = {
    "ImageClassifier": "classifier",
    "create_backbone": "backbone",
    "preprocessing_of": "backbone",
    "check_name": "backbone",
    "warmup_cosine": "schedule",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
