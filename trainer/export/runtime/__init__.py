"""The files a bundle carries and runs without this package: ``score.py`` (``init()`` and
``run(request)``: decode, resize bit for bit as training did, ONNX Runtime, pass/fail) and
``server.py`` (the HTTP app around it). ``trainer.export.bundle`` copies them as they are."""

__all__ = ["score", "server"]
