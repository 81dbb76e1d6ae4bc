"""How close the memory check's floor comes to what a real training step keeps.

``trainer.utils.memory.step_lower_bound`` counts, on the meta device, the inputs that layers with
trainable weights must keep for backward, plus a gradient per weight. The reference here runs a
real forward pass on the CPU and counts what autograd itself saved (its saved-tensor hooks:
unique storages, the weights left out), plus the same gradients. The floor must never exceed it.

    python scripts/bench/memory_bound.py                         # seven timm backbones, batch 4
    python scripts/bench/memory_bound.py --backbones resnet10t:64 --batch 2

Prints one JSON row per backbone: {"backbone", "side", "batch", "bound_mib", "autograd_mib",
"ratio"}.
"""

from __future__ import annotations

import argparse
import json

import timm
import torch
from torch import nn

from trainer.utils.memory import step_lower_bound

BACKBONES = [
    "resnet10t:128",
    "resnet50:128",
    "efficientnet_b0:128",
    "convnext_atto:128",
    "vit_tiny_patch16_224:224",
    "swin_tiny_patch4_window7_224:224",
    "levit_128s:224",
]


def autograd_kept_bytes(net: nn.Module, side: int, batch: int) -> int:
    """What one real training step keeps: autograd's saved tensors and a gradient per weight."""
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net.train()(torch.randn(batch, 3, side, side))
    kept = sum(n for ptr, n in saved.items() if ptr not in weights)
    return kept + sum(p.numel() * p.element_size() for p in net.parameters() if p.requires_grad)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=BACKBONES, help="timm name:side")
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args()
    for item in args.backbones:
        name, _, side_text = item.partition(":")
        if not side_text.isdigit() or not timm.is_model(name):
            p.error(f"--backbones {item}: give a timm model name and a side, e.g. resnet10t:128")
        side = int(side_text)
        net = timm.create_model(name, pretrained=False, num_classes=2)
        bound = step_lower_bound(net, (3, side, side), args.batch)
        real = autograd_kept_bytes(net, side, args.batch)
        row = {
            "backbone": name,
            "side": side,
            "batch": args.batch,
            "bound_mib": None if bound is None else round(bound / 2**20, 1),
            "autograd_mib": round(real / 2**20, 1),
            "ratio": None if bound is None else round(bound / real, 3),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
