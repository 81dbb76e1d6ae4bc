"""Read checkpoints safely: tensors and plain data only (``weights_only``), never pickled code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.errors import CheckpointError


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint dict at ``path``, loaded on the CPU with ``weights_only=True``.

    ``mmap=True`` maps the tensors instead of reading them: reading the metadata of a large
    checkpoint then costs no memory for its weights.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path: file '{path}' does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise CheckpointError(
            f"ckpt_path: '{path}' is not a checkpoint this project can read safely "
            f"({str(err).splitlines()[0][:200]})"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"ckpt_path: '{path}' is not a Lightning checkpoint (no state_dict)")
    return ckpt


def metadata_of(
    ckpt: dict[str, Any], path: str | Path, option: str = "ckpt_path", model: bool = False
) -> dict[str, Any]:
    """``ckpt["trainer_metadata"]``; a checkpoint without it was not written by this project
    (a plain Lightning or timm file): one line naming ``option``. ``model``: it must also say
    which network it holds (class names and backbone), to be rebuilt."""
    meta = ckpt.get("trainer_metadata")
    if not meta or (model and not (meta.get("class_names") and meta.get("backbone"))):
        raise CheckpointError(f"{option}: '{path}' was not written by this project (no metadata)")
    return meta


def checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """What the checkpoint says about itself: classes, preprocessing, backbone, config, lineage."""
    return metadata_of(load_checkpoint(path, mmap=True), path)


def check_classes(path: str | Path, trained: list[str], class_names: list[str]) -> None:
    """Refuse a checkpoint whose classes differ from the data's."""
    if list(trained) != list(class_names):
        raise CheckpointError(
            f"ckpt_path: '{path}' was trained on classes {list(trained)} but the data has "
            f"{list(class_names)}; use data whose class folders match, or train a new model"
        )


def check_resumable(
    path: str | Path, class_names: list[str], model: torch.nn.Module, backbone: str
) -> None:
    """Refuse, in one line, a checkpoint a run cannot continue from: other classes, or weights
    that do not fit ``model`` (another backbone or size; Lightning would fail later with a long
    state-dict traceback). Reads the file once."""
    ckpt = load_checkpoint(path)
    meta = metadata_of(ckpt, path)
    check_classes(path, meta["class_names"], class_names)
    theirs, ours = ckpt["state_dict"], model.state_dict()
    for key in [*ours, *(k for k in theirs if k not in ours)]:
        mine = tuple(ours[key].shape) if key in ours else "absent"
        saved = tuple(theirs[key].shape) if key in theirs else "absent"
        if mine != saved:
            raise CheckpointError(
                f"ckpt_path: '{path}' holds weights of {meta.get('backbone', 'another model')} "
                f"that do not fit this run's {backbone} ({key}: {saved} in the checkpoint, "
                f"{mine} here); give a matching ckpt_path, or start afresh with resume=never or "
                "another hydra.run.dir"
            )


def classifier_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Any:
    """The ImageClassifier a checkpoint describes, with its trained weights, in eval mode.

    Built from the checkpoint's own metadata and hyperparameters (no hub look-up, no pickled code);
    the one place evaluation, export and explanations rebuild a model.
    """
    from trainer.models.classifier import ImageClassifier

    meta = metadata_of(ckpt, path, model=True)
    if meta.get("kind") == "anomaly":
        raise CheckpointError(
            f"ckpt_path: '{path}' is an anomaly model (good images only, model=patchcore); "
            "this command takes a classifier's checkpoint (eval.py takes both)"
        )
    hparams = ckpt.get("hyper_parameters") or {}
    model_cfg = (meta.get("config") or {}).get("model") or {}
    model = ImageClassifier(
        backbone=meta["backbone"],
        class_names=list(meta["class_names"]),
        pretrained=False,
        input_size=int(meta["preprocessing"]["input_size"][-1]),
        drop_rate=float(hparams.get("drop_rate", 0.0)),
        model_kwargs=dict(hparams.get("model_kwargs") or model_cfg.get("model_kwargs") or {}),
        good_class=hparams.get("good_class", "good"),
    )
    return _with_weights(model, ckpt, path, meta)


def anomaly_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Any:
    """The PatchCore model a checkpoint describes, memory bank included, in eval mode."""
    from trainer.models.patchcore import PatchCore

    meta = metadata_of(ckpt, path, model=True)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    for key in ("pretrained", "pretrained_path", "require_pretrained", "class_names", "input_size"):
        hparams.pop(key, None)
    model = PatchCore(
        class_names=list(meta["class_names"]),
        pretrained=False,
        input_size=int(meta["preprocessing"]["input_size"][-1]),
        **hparams,
    )
    return _with_weights(model, ckpt, path, meta)


def _with_weights(model: Any, ckpt: dict[str, Any], path: str | Path, meta: dict[str, Any]) -> Any:
    """``model`` with the checkpoint's weights and metadata, in eval mode."""
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"ckpt_path: '{path}' weights do not fit backbone {meta['backbone']} "
            f"({str(err).splitlines()[0][:160]})"
        ) from err
    model.run_metadata = dict(meta)
    return model.eval()


def load_model(path: str | Path) -> Any:
    """The model of checkpoint ``path``, of whichever kind it is (``trainer_metadata["kind"]``:
    an ``ImageClassifier``, or an anomaly model), in eval mode on the CPU."""
    path = Path(path).expanduser().resolve()
    ckpt = load_checkpoint(path)
    if (ckpt.get("trainer_metadata") or {}).get("kind") == "anomaly":
        return anomaly_from_checkpoint(ckpt, path)
    return classifier_from_checkpoint(ckpt, path)


def load_classifier(path: str | Path) -> Any:
    """The ``ImageClassifier`` of checkpoint ``path`` (read once, ``weights_only``), in eval mode
    on the CPU, its metadata in ``model.run_metadata``: what evaluation, export, explanations and
    the benchmarks load."""
    path = Path(path).expanduser().resolve()
    return classifier_from_checkpoint(load_checkpoint(path), path)


def kept_model_metrics(trainer: Any) -> dict[str, float]:
    """The figures of the model a run keeps: the epoch of its best checkpoint, not the last one.

    With early stopping the last epochs come after the best; a sweep optimising ``val/f1`` and the
    run history must see the model that is tested, exported and shipped. Each checkpoint records
    its epoch's metrics (``ImageClassifier.on_save_checkpoint``); without a best checkpoint (no
    ModelCheckpoint, ``fast_dev_run``) the last epoch's are all there is.
    """
    last = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
    if not best:
        return last
    recorded = (load_checkpoint(best, mmap=True).get("trainer_metadata") or {}).get("metrics")
    return dict(recorded) if recorded else last
