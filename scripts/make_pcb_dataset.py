"""Render the procedural circuit-board defect dataset (see trainer/data/pcb/).

Examples:
    python scripts/make_pcb_dataset.py                           # the set data=pcb trains on
    python scripts/make_pcb_dataset.py data.generator.num_train=2000 data.generator.seed=1
    python scripts/make_pcb_dataset.py data.generator.image_size=64 out=data/pcb64 progress=false

The generator's keys are those of configs/data/pcb.yaml; the others are in
configs/make_pcb_dataset.yaml. Without ``out`` the set goes to ``data/pcb/pcb-<digest>``, where
``python train.py`` with the same ``data.generator`` settings finds it. An existing set of the same
settings is reused; a folder holding anything else is never written into. Exit code: 0 done,
2 bad input (one line).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra
from omegaconf import DictConfig, OmegaConf

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))


def make(cfg: DictConfig) -> Path:
    """Generate the set of ``cfg.data.generator`` into ``cfg.out``; print its class counts."""
    import json
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from trainer.data.pcb import CLASSES, SPLITS, PCBSpec, generate_dataset, generated_folder
    from trainer.errors import ConfigError

    try:
        spec = PCBSpec(**OmegaConf.to_container(cfg.data.generator, resolve=True))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data.generator: {err}") from err
    if cfg.workers is not None and (not isinstance(cfg.workers, int) or cfg.workers < 1):
        raise ConfigError(f"workers: '{cfg.workers}' is not a positive integer or null")
    if not isinstance(cfg.progress, bool):
        raise ConfigError(f"progress: '{cfg.progress}' is not true or false")
    out = Path(cfg.out).expanduser() if cfg.out else generated_folder(cfg.data.root, spec)
    try:
        root = generate_dataset(out, spec, progress=cfg.progress, workers=cfg.workers)
    except FileExistsError as err:
        raise ConfigError(f"out: {err}") from err
    meta = json.loads((root / "metadata.json").read_text())
    counts = Counter((m["split"], m["label"]) for m in meta["images"])
    table = Table(title=f"PCB dataset {meta['digest']} at {root}")
    table.add_column("class")
    for split in SPLITS:
        table.add_column(split, justify="right")
    for c in CLASSES:
        table.add_row(c, *(str(counts[(s, c)]) for s in SPLITS))
    table.add_row("total", *(str(sum(counts[(s, c)] for c in CLASSES)) for s in SPLITS))
    Console().print(table)
    return root


@hydra.main(version_base="1.3", config_path="../configs", config_name="make_pcb_dataset")
def main(cfg: DictConfig) -> None:
    from trainer.utils.entry import run_reporting_errors

    run_reporting_errors(make, cfg)


if __name__ == "__main__":
    from trainer.utils.hydra_entry import hydra_entry

    hydra_entry(main, "make_pcb_dataset", __doc__)
