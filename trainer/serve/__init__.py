"""Serve an export bundle over HTTP: ``python -m trainer.serve BUNDLE [--host --port]``.

The app itself is ``trainer/export/runtime/server.py``, which the export also copies into each bundle as
``server.py``; this package only adds the project's error reporting around it.
"""

__all__: list[str] = []  # a command: ``python -m trainer.serve``
