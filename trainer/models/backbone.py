"""Backbones from timm's real factory, with pretrained weights from the hub or a local file.

Offline machines are the norm on clusters and factory floors: timm's hub client retries for
about 47 s before giving up, so we decide within a few seconds whether the hub is reachable and
fall back to random initialisation with one warning (or fail, when weights are required).
"""

from __future__ import annotations

import difflib
import logging
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
import torch.nn as nn

from trainer.errors import ConfigError, PretrainedWeightsError

log = logging.getLogger(__name__)

HUB_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """True when the Hugging Face hub answers a TCP connection within ``timeout`` seconds."""
    import huggingface_hub.constants as hf

    if hf.HF_HUB_OFFLINE:
        return False
    url = urlparse(hf.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_name(name: str) -> None:
    """Raise a ConfigError naming close matches when ``name`` is not a timm model."""
    if name in timm.list_models() or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise ConfigError(f"model.backbone: '{name}' is not a timm model.{hint}")


def create_backbone(
    name: str,
    num_classes: int,
    pretrained: bool = True,
    pretrained_path: str | None = None,
    require_pretrained: bool = False,
    **kwargs: Any,
) -> tuple[nn.Module, bool]:
    """Build ``name`` with a new ``num_classes`` head; return the network and whether weights loaded.

    Args:
        name: timm model name, e.g. ``resnet18``.
        num_classes: classes of the new head (timm drops the pretrained classifier).
        pretrained: load pretrained weights (from ``pretrained_path`` or the hub).
        pretrained_path: a local ``.safetensors`` or ``torch.save`` file of the backbone's weights,
            or a checkpoint of this project (its backbone is taken, its head left).
        require_pretrained: raise instead of warning when the weights cannot be had.
        **kwargs: passed on to ``timm.create_model`` (``drop_rate``, ``dynamic_img_size``, ...).
    """
    check_name(name)
    if pretrained_path:
        path = Path(pretrained_path).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(
                f"model.pretrained_path: file '{path}' does not exist; give a .safetensors or "
                ".pth weights file, or set model.pretrained_path=null"
            )
        # A checkpoint of this project: its backbone, handed to timm's own loader as a state
        # dict (timm's pretrained_cfg "state_dict" source); the head is new.
        ours = _checkpoint_backbone(path, name)
        source = {"state_dict": ours} if ours is not None else {"file": str(path)}
        try:
            net = timm.create_model(
                name,
                pretrained=True,
                num_classes=num_classes,
                pretrained_cfg_overlay=source,
                **kwargs,
            )
        except Exception as err:  # timm raises RuntimeError, KeyError, safetensors errors...
            raise PretrainedWeightsError(
                f"model.pretrained_path: '{path}' could not be loaded into {name}: "
                f"{str(err).splitlines()[0]}"
            ) from err
        shapes = (
            {k: tuple(v.shape) for k, v in ours.items()} if ours is not None else _file_shapes(path)
        )
        _check_coverage(net, shapes, path, name)
        log.info("Loaded pretrained weights for %s from %s", name, path)
        return net, True
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs), False
    return _from_hub(name, num_classes, require_pretrained, **kwargs)


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for key in ("state_dict", "model", "state_dict_ema"):  # the wrappings timm also unwraps
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {
        k.removeprefix("module."): tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")
    }


def _checkpoint_backbone(path: Path, name: str) -> dict[str, torch.Tensor] | None:
    """The backbone weights of a checkpoint written by this project (a Lightning checkpoint
    whose ``state_dict`` holds the network under ``net.``), its head left out; None for a
    plain weights file. A checkpoint of another backbone is one line naming both."""
    if path.suffix == ".safetensors":
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None  # not a file torch reads safely: timm's loader gives the error
    meta = ckpt.get("trainer_metadata") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or not isinstance(ckpt.get("state_dict"), dict):
        return None
    source = meta.get("backbone")
    if source and source != name:
        raise PretrainedWeightsError(
            f"model.pretrained_path: '{path}' is a checkpoint of {source}, not of {name}; set "
            f"model.backbone={source}, or give weights of {name}"
        )
    with torch.device("meta"):  # the head's parameter names, without building real weights
        shell = timm.create_model(name, pretrained=False, num_classes=1)
    head = {id(p) for p in shell.get_classifier().parameters()}
    head_names = {k for k, p in shell.named_parameters() if id(p) in head}
    return {
        key: value
        for key, value in (
            (k.removeprefix("net."), v)
            for k, v in ckpt["state_dict"].items()
            if k.startswith("net.")
        )
        if key not in head_names
    }


def _check_coverage(
    net: nn.Module, found: dict[str, tuple[int, ...]], path: Path, name: str
) -> None:
    """timm loads non-strictly once the head is replaced: make sure the backbone really loaded."""
    head = {id(p) for p in net.get_classifier().parameters()}
    wanted = {k: tuple(p.shape) for k, p in net.named_parameters() if id(p) not in head}
    matched = sum(found.get(k) == shape for k, shape in wanted.items())
    if matched < 0.9 * len(wanted):
        raise PretrainedWeightsError(
            f"model.pretrained_path: '{path}' matches only {matched} of {len(wanted)} weight "
            f"tensors of {name}; is it a checkpoint of another architecture?"
        )


def _from_hub(
    name: str, num_classes: int, require_pretrained: bool, **kwargs: Any
) -> tuple[nn.Module, bool]:
    import huggingface_hub.constants as hf

    online = hub_reachable()
    was_offline = hf.HF_HUB_OFFLINE
    if not online:
        hf.HF_HUB_OFFLINE = True  # use the local cache only: fails in milliseconds, not 47 s
    try:
        net = timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
        log.info(
            "Loaded pretrained weights for %s from the hub%s", name, "" if online else " cache"
        )
        return net, True
    except Exception as err:
        reason = "the model hub cannot be reached" if not online else str(err).splitlines()[0]
        if require_pretrained:
            raise PretrainedWeightsError(
                f"model.require_pretrained: no pretrained weights for {name} ({reason}); "
                "give a local file with model.pretrained_path=PATH"
            ) from err
        log.warning(
            "No pretrained weights for %s (%s): training from random initialisation. "
            "Give model.pretrained_path=PATH, or model.require_pretrained=true to make this an error.",
            name,
            reason,
        )
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs), False
    finally:
        hf.HF_HUB_OFFLINE = was_offline


def input_size_for(name: str, side: int | None, multiple: int = 32) -> int:
    """An input side for images of about ``side`` pixels: rounded to ``multiple`` (a CNN's
    stride, two ViT patches) and kept between ``multiple`` and the backbone's pretrained size
    (above it a pretrained network sees its objects at scales it never learned, for more
    compute). ``side`` None: the pretrained size."""
    cfg = timm.get_pretrained_cfg(name)
    pretrained = int((getattr(cfg, "input_size", None) or (3, 224, 224))[-1])
    if side is None:
        return pretrained
    return int(min(pretrained, max(multiple, multiple * round(side / multiple))))


def preprocessing_of(net: nn.Module, input_size: int | str | None = None) -> dict[str, Any]:
    """What every consumer of the model (training, eval, export, serving) must do to an image.

    Mean, std and interpolation come from the backbone's pretrained config (timm's data config);
    the input is a square resize of the whole image (no crop: a defect at the edge must stay).
    """
    cfg = timm.data.resolve_data_config({}, model=net)
    auto = input_size in (None, "auto")  # auto without data (train.py resolves it from the data)
    side = int(cfg["input_size"][-1] if auto else input_size)
    return {
        "input_size": [3, side, side],
        "resize": [side, side],
        "interpolation": str(cfg.get("interpolation", "bilinear")),
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "channel_order": "RGB",
        "scale": 255.0,
    }
