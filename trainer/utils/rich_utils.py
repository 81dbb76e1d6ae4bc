"""What a person reads on the terminal: the composed config as a tree, metrics as a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

console = Console()

FIRST = ("data", "model", "callbacks", "logger", "trainer", "paths", "experiment")


def print_config_tree(cfg: DictConfig, order: Sequence[str] = FIRST) -> None:
    """Print each top-level group of the resolved config as a branch of YAML."""
    tree = Tree("config", style="dim", guide_style="dim")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    for key in keys:
        branch = tree.add(f"[bold]{key}[/bold]")
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        )
        branch.add(Syntax(text, "yaml", background_color="default"))
    console.print(tree)


def print_metrics_table(metrics: Mapping[str, float], title: str = "test metrics") -> None:
    table = Table(title=title)
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    for name in sorted(metrics):
        table.add_row(name, f"{metrics[name]:.4f}")
    console.print(table)
