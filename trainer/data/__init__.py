"""Data: any ``root/<class>/*`` folder as a Lightning data module (``datamodule``), its splits
(``image_folder``), images decoded and resized (``dataset``), the training order (``sampler``), the
dataset fingerprint (``fingerprint``); the generated circuit boards in ``pcb/``, the data checks in
``checks/``.
"""

from trainer._exports import lazy

_EXPORTS = {
    "ImageFolderDataModule": "datamodule",
    "PCBDataModule": "datamodule",
    "scan_image_folder": "image_folder",
    "image_files": "image_folder",
    "FolderSplits": "image_folder",
    "Sample": "image_folder",
    "SPLITS": "image_folder",
    "IMAGE_EXTENSIONS": "image_folder",
    "ImageSamples": "dataset",
    "load_image": "dataset",
    "load_images": "dataset",
    "EpochShuffle": "sampler",
    "dataset_fingerprint": "fingerprint",
    "file_sha256": "fingerprint",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy(__name__, _EXPORTS)
