"""Deployment bundles: ONNX and torch.export forms of a checkpoint, its schema, a scoring script.

``export_bundle(ckpt_path, out)`` (``scripts/export.py``) writes a bundle folder and refuses one
whose ONNX output disagrees with the checkpoint; ``score_template.py`` becomes the bundle's
``score.py``; ``python -m trainer.serve BUNDLE`` serves it over HTTP.
"""

from trainer.errors import TrainerError


class ExportError(TrainerError):
    """A bundle cannot be written as asked (existing folder, failed parity, bad option)."""
