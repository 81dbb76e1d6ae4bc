"""Checkpoints: reading them safely (``read``: ``weights_only``, the one model loader), writing
them atomically (``atomic_io``), continuing a run (``resume``), starting a new one from an earlier
model (``finetune``).
"""

from trainer._exports import lazy

_EXPORTS = {
    "load_checkpoint": "read",
    "load_classifier": "read",
    "load_model": "read",
    "checkpoint_metadata": "read",
    "metadata_of": "read",
    "classifier_from_checkpoint": "read",
    "anomaly_from_checkpoint": "read",
    "check_classes": "read",
    "check_resumable": "read",
    "kept_model_metrics": "read",
    "AtomicCheckpointIO": "atomic_io",
    "with_atomic_io": "atomic_io",
    "wait_for_checkpoints": "atomic_io",
    "resolve_ckpt_path": "resume",
    "auto_resume_path": "resume",
    "load_parent": "finetune",
    "leave_out_trained": "finetune",
    "exclude_parent_training_images": "finetune",
    "check_finetune_options": "finetune",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
