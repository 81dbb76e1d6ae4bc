"""What Hydra knows about the running command: its overrides and the experiment it applied."""

from __future__ import annotations

__all__ = ["experiment_name", "task_overrides"]


def task_overrides() -> list[str]:
    """The command line's overrides; none when not under Hydra (a library call)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def experiment_name() -> str | None:
    """The experiment config applied, if any (``data=folder`` names ``folder_defect``, which is
    optional and absent: Hydra still lists it among the choices)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    try:
        choice = HydraConfig.get().runtime.choices.get("experiment")
    except ValueError:
        return None
    hydra_global = GlobalHydra.instance()
    if choice is None or not hydra_global.is_initialized():
        return choice
    known = hydra_global.config_loader().get_group_options("experiment")
    return choice if choice in known else None
