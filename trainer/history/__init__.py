"""The run history: one SQLite row per train and eval run (``store``), the row of a task run
(``record``), and the commands of ``scripts/history.py`` (``commands``).
"""

from trainer._exports import lazy

_EXPORTS = {
    "RunHistory": "store",
    "record_run": "store",
    "regressions": "store",
    "config_digest": "store",
    "new_run_id": "store",
    "remember": "record",
    "run_command": "commands",
    "COMMANDS": "commands",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
