"""What every layer uses: atomic file writes, the clock, strict JSON, instantiation from config
groups, the device a setting means, DDP helpers, lineage, loggers, the console, the entry wrapper
that turns errors into one line.
"""

from trainer._exports import lazy

_EXPORTS = {
    "atomic_write": "atomic",
    "now_utc": "clock",
    "stamp_utc": "clock",
    "strict_json": "jsonsafe",
    "instantiate_group": "instantiate",
    "on_gpu": "device",
    "default_precision": "device",
    "run_reporting_errors": "entry",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
