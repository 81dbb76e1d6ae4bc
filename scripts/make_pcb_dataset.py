"""Generate the procedural circuit-board defect dataset (see trainer/data/pcb/generator.py).

Example: python scripts/make_pcb_dataset.py --out data/pcb --num-train 2000 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.data.pcb.generator import CLASSES, SPLITS, PCBSpec, generate_dataset


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as a single stderr line (no usage dump), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(description="Render the procedural PCB defect dataset.")
    defaults = PCBSpec()
    p.add_argument("--out", type=Path, default=Path("data/pcb"), help="new or empty folder")
    p.add_argument("--image-size", type=int, default=defaults.image_size)
    p.add_argument("--num-train", type=int, default=defaults.num_train)
    p.add_argument("--num-val", type=int, default=defaults.num_val)
    p.add_argument("--num-test", type=int, default=defaults.num_test)
    p.add_argument("--good-fraction", type=float, default=defaults.good_fraction)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--workers", type=int, default=None, help="render processes (default: <=2)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        spec = PCBSpec(
            image_size=args.image_size,
            num_train=args.num_train,
            num_val=args.num_val,
            num_test=args.num_test,
            good_fraction=args.good_fraction,
            seed=args.seed,
        )
    except ValueError as e:
        p.error(str(e))
    try:
        root = generate_dataset(args.out, spec, progress=not args.no_progress, workers=args.workers)
    except FileExistsError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 1

    import json

    from rich.console import Console
    from rich.table import Table

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
