"""Serve an export bundle over HTTP: ``python -m trainer.serve BUNDLE [--host --port]``.

The app itself is ``trainer/serve/app.py``, which the export also copies into each bundle as
``server.py``; this package only adds the project's error reporting around it.
"""
