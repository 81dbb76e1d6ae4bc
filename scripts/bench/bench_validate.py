"""Benchmark the dataset scan against a bare decode loop over the same files.

Generates (once) 10,000 boards at 128 px into a cache folder outside the repository, then times:
a bare loop that only opens and decodes each file; the fast pre-training checks (hash, decode,
RGB statistics); the full scan (plus perceptual hashes), in one process and in two.

Example: python scripts/bench/bench_validate.py --num 10000 --cache /tmp/trainer-bench-validate
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PIL import Image

from trainer.data.checks.policy import Policy
from trainer.data.checks.validation import analyse, walk_tree
from trainer.data.pcb import PCBSpec, generate_dataset, generated_folder


def bare_loop(paths: list[Path]) -> None:
    """Only what any scan must do: open and fully decode every file."""
    for path in paths:
        with Image.open(path) as img:
            img.load()


def timed(fn) -> float:  # noqa: ANN001 - any callable
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=10_000, help="images (all in the train split)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--cache", type=Path, default=Path("/tmp/trainer-bench-validate"))
    p.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    spec = PCBSpec(image_size=args.size, num_train=args.num, num_val=0, num_test=0)
    root = generate_dataset(generated_folder(args.cache, spec), spec)
    tree = walk_tree(root, 0, 0)
    paths = [e.path for e in tree.images]
    bare_loop(paths)  # warm the page cache: every variant then reads from memory

    variants = {
        "bare open+decode loop": lambda: bare_loop(paths),
        "fast checks (train.py), 1 process": lambda: analyse(
            tree, Policy(workers=1), perceptual=False
        ),
        "fast checks (train.py), 2 processes": lambda: analyse(
            tree, Policy(workers=2), perceptual=False
        ),
        "full scan, 1 process": lambda: analyse(tree, Policy(workers=1)),
        "full scan, 2 processes": lambda: analyse(tree, Policy(workers=2)),
    }
    results = {}
    for name, fn in variants.items():
        seconds = min(timed(fn) for _ in range(args.repeats))
        results[name] = {
            "seconds": round(seconds, 2),
            "images_per_second": round(len(paths) / seconds),
        }
    bare = results["bare open+decode loop"]["seconds"]
    load = os.getloadavg()[0]
    print(f"{len(paths)} images of {args.size} px, {os.cpu_count()} CPUs, load {load:.2f}")
    for name, r in results.items():
        print(
            f"  {name:36s} {r['seconds']:7.2f} s  {r['images_per_second']:6d} img/s  "
            f"{r['seconds'] / bare:5.2f}x the bare loop"
        )
    if args.json:
        args.json.write_text(json.dumps({"images": len(paths), "load": load, **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
