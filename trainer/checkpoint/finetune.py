"""Refresh on new data: ``python train.py finetune_from=PATH data.root=NEW_DATA``.

The new run starts from an earlier model's weights (not its optimizer, schedule or epoch: a
refresh is a new training run) and records the parent in its lineage. The parent's classes
must be the data's classes; ``reset_head=true`` keeps the backbone and gives the model a
new head when the class set has changed on purpose.

The child is never scored on what its parent learnt from: the parent's checkpoint records the
content digests of its training images (``trained_on_sha256_16``, see
``ImageFolderDataModule.summary``), and the child's val and test images with those contents,
under any name or folder, are left out of val and test (``exclude_parent_training_images``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trainer.checkpoint.read import load_checkpoint, metadata_of
from trainer.data.fingerprint import file_sha256
from trainer.errors import CheckpointError, ConfigError, DataError

log = logging.getLogger(__name__)


def _head_prefix(model: Any) -> str:
    """The state-dict prefix of the classifier head, e.g. ``net.fc.``."""
    for name, module in model.named_modules():
        if module is model.head:
            return f"{name}."
    raise RuntimeError("the model's head is not one of its modules")


def load_parent(
    model: Any, path: str | Path, reset_head: bool = False, datamodule: Any = None
) -> dict[str, Any]:
    """Load the weights of checkpoint ``path`` into ``model``; return its lineage entry.

    Args:
        model: a freshly built ImageClassifier for the new data's classes.
        path: the parent checkpoint (read with ``weights_only=True``).
        reset_head: keep the model's new head and load only the backbone.
        datamodule: the child's data, before ``summary`` and ``setup``: the parent's training
            images are taken out of its val and test (``exclude_parent_training_images``).

    Raises:
        CheckpointError: the file is not a checkpoint of this project, is of another backbone,
            or was trained on other classes while ``reset_head`` is false.
    """
    path = Path(path).expanduser().resolve()
    ckpt = load_checkpoint(path)
    meta = metadata_of(ckpt, path, "finetune_from")
    backbone = meta.get("backbone")
    if backbone != model.hparams.backbone:
        raise CheckpointError(
            f"finetune_from: '{path}' is a {backbone} model but model.backbone is "
            f"{model.hparams.backbone}; set model.backbone={backbone}"
        )
    parent_classes = list(meta.get("class_names", []))
    same_classes = parent_classes == list(model.class_names)
    if not same_classes and not reset_head:
        raise CheckpointError(
            f"finetune_from: '{path}' was trained on classes {parent_classes} but the data has "
            f"{list(model.class_names)}; use data with the same class folders, or set "
            "reset_head=true to keep the backbone and train a new head"
        )
    state = ckpt["state_dict"]
    if same_classes and not reset_head:
        model.load_state_dict(state, strict=True)
    else:
        head = _head_prefix(model)
        backbone_state = {k: v for k, v in state.items() if not k.startswith(head)}
        missing, unexpected = model.load_state_dict(backbone_state, strict=False)
        if unexpected or any(not k.startswith(head) for k in missing):
            raise CheckpointError(f"finetune_from: '{path}' does not fit model.backbone={backbone}")
        log.info("finetune_from: backbone loaded, new head for classes %s", model.class_names)
    model.pretrained_loaded = True  # the parent's backbone is the pretrained start: freeze applies
    parent = {
        "path": str(path),
        "sha256": file_sha256(path),
        "fingerprint": (meta.get("data") or {}).get("fingerprint"),
        "class_names": parent_classes,
        "reset_head": bool(reset_head),
    }
    log.info("Fine-tuning from %s (sha256 %s)", path, parent["sha256"][:12])
    if datamodule is not None:
        parent["excluded"] = exclude_parent_training_images(datamodule, meta)
    return parent


def exclude_parent_training_images(
    datamodule: Any, parent_meta: dict[str, Any]
) -> dict[str, int] | None:
    """Drop from the child's val and test every image whose content the parent trained on.

    Dropped rather than moved to train: moving would make a file's split depend on the parent,
    not on the file alone, and the child learns from the parent's weights already. Matching is
    by content (the first 16 hex chars of each file's sha256), so renamed copies in a new root
    count. Returns split -> images dropped (recorded in the lineage), or None when the parent
    (an older checkpoint) has no record and nothing could be checked.

    Raises:
        DataError: the exclusion leaves val or test empty.
    """
    return leave_out_trained(datamodule, parent_meta, ("val", "test"), "finetune_from", "parent")


def leave_out_trained(
    datamodule: Any,
    meta: dict[str, Any],
    splits: tuple[str, ...],
    who: str,
    whose: str,
    refuse_empty: bool = True,
) -> dict[str, int] | None:
    """Drop from ``splits`` every image a model trained on, by its recorded content digests
    (``meta["data"]["trained_on_sha256_16"]``), and say so: ``who`` starts the log lines,
    ``whose`` names the model (``parent``, ``model``). Shared by refresh and evaluation.

    Returns split -> images dropped, or None when ``meta`` (an older checkpoint) has no record.

    Raises:
        DataError: ``refuse_empty`` and a split that had images is left empty.
    """
    trained = (meta.get("data") or {}).get("trained_on_sha256_16")
    if trained is None:
        log.warning(
            "%s: the %s checkpoint does not record its training images (written before they "
            "were recorded): cannot check that %s hold none of them",
            who,
            whose,
            " and ".join(splits),
        )
        return None
    dropped = datamodule.exclude_trained(trained, splits)
    for split, (n, before) in dropped.items():
        if refuse_empty and before and n == before:
            raise DataError(
                f"{who}: all {before} {split} images of data.root '{datamodule.dataset_root}' "
                f"are in the {whose}'s training set; add images the {whose} did not train on "
                f"(to its {split}/ folder if it has one)"
            )
        (log.warning if n else log.info)(
            "%s: %d of %d %s images were in the %s's training set: excluded from %s",
            who,
            n,
            before,
            split,
            whose,
            split,
        )
    return {split: n for split, (n, _) in dropped.items()}


def check_finetune_options(cfg: Any) -> None:
    if cfg.get("finetune_from") and cfg.get("ckpt_path"):
        raise ConfigError(
            "finetune_from and ckpt_path are both set: ckpt_path continues a run (optimizer, "
            "epoch), finetune_from starts a new one from its weights; keep one"
        )
