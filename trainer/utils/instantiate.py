"""Objects from config groups, shared by the tasks (lightning-hydra-template's instantiators)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

__all__ = ["instantiate_group"]


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a callbacks/logger group that has a ``_target_``."""
    import hydra

    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if c and "_target_" in c]
