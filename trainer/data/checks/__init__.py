"""The data checks: every file scanned (``validation``) under a policy of what fails
(``policy``), per-image statistics (``image_stats``), the data contract a checkpoint carries
(``contract``), the drift test of new images against it (``drift``) and an anomaly model's
good-only training split (``anomaly_train``). None of them modifies a file.
"""

from trainer._exports import lazy

_EXPORTS = {
    "validate_dataset": "validation",
    "ValidationReport": "validation",
    "Policy": "policy",
    "load_contract": "contract",
    "contract_before_training": "contract",
    "run_policy": "contract",
    "write_contract": "contract",
    "check_batch": "drift",
    "check_anomaly_training": "anomaly_train",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
