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
        pretrained_path: a local ``.safetensors`` or ``torch.save`` file of the backbone's weights.
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
        try:
            net = timm.create_model(
                name,
                pretrained=True,
                num_classes=num_classes,
                pretrained_cfg_overlay={"file": str(path)},
                **kwargs,
            )
        except Exception as err:  # timm raises RuntimeError, KeyError, safetensors errors...
            raise PretrainedWeightsError(
                f"model.pretrained_path: '{path}' could not be loaded into {name}: "
                f"{str(err).splitlines()[0]}"
            ) from err
        _check_coverage(net, path, name)
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
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for key in ("state_dict", "model", "state_dict_ema"):  # the wrappings timm also unwraps
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {
        k.removeprefix("module."): tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")
    }


def _check_coverage(net: nn.Module, path: Path, name: str) -> None:
    """timm loads non-strictly once the head is replaced: make sure the backbone really loaded."""
    head = {id(p) for p in net.get_classifier().parameters()}
    wanted = {k: tuple(p.shape) for k, p in net.named_parameters() if id(p) not in head}
    found = _file_shapes(path)
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


def preprocessing_of(net: nn.Module, input_size: int | None = None) -> dict[str, Any]:
    """What every consumer of the model (training, eval, export, serving) must do to an image.

    Mean, std and interpolation come from the backbone's pretrained config (timm's data config);
    the input is a square resize of the whole image (no crop: a defect at the edge must stay).
    """
    cfg = timm.data.resolve_data_config({}, model=net)
    side = int(input_size or cfg["input_size"][-1])
    return {
        "input_size": [3, side, side],
        "resize": [side, side],
        "interpolation": str(cfg.get("interpolation", "bilinear")),
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "channel_order": "RGB",
        "scale": 255.0,
    }
