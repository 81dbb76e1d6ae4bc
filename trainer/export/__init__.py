"""Deployment bundles: ONNX and torch.export forms of a checkpoint, its schema, a scoring script.

``export_bundle(ckpt_path, out)`` (``scripts/export.py``) writes a bundle folder and refuses one
whose ONNX output disagrees with the checkpoint (``parity``); ``quantize`` makes its int8 form
(``quantize=int8``), gated by ``parity.check_int8``. ``runtime/`` holds the files copied
into every bundle as they are: ``score.py`` and ``server.py`` (``python -m trainer.serve BUNDLE``
serves one). Those two import nothing of this package: a bundle runs without it.
"""

from trainer._exports import lazy
from trainer.errors import TrainerError


class ExportError(TrainerError):
    """A bundle cannot be written as asked (existing folder, failed parity, bad option)."""


_EXPORTS = {
    "export_bundle": "bundle",
    "check_parity": "parity",
    "export_onnx": "onnx_export",
    "FORMATS": "formats",
}
__all__ = ["ExportError", *_EXPORTS]
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
