"""A self-supervised set from good images alone: each good image and a CutPaste copy of it.

Train a classifier on it (``python train.py data=folder data.root=OUT``) and give its checkpoint
to an anomaly model (``experiment=pcb_anomaly model.pretrained_path=<its checkpoint>``): a
backbone that learnt local irregularity from good boards only (trainer/data/synthetic_defects.py).

Examples:
    python scripts/make_synthetic_defects.py data/pcb/pcb-79e06ee18a/train/good data/selfsup_a
    python scripts/make_synthetic_defects.py 'boards/good/*.png' data/selfsup --seed 1

Writes ``OUT/{train,val,test}/{good,synthetic_defect}/*.png`` (a share of the images, by a hash of
their names, goes to val and test); the images given are only read. Exit code: 0 done, 2 bad
input (one line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import trainer  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", help="a folder of good images (walked recursively) or a glob")
    p.add_argument("out", type=Path, help="the new set's folder (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-share", type=float, default=0.1)
    p.add_argument("--test-share", type=float, default=0.1)
    args = p.parse_args(argv)

    from trainer.data.image_folder import image_files
    from trainer.data.synthetic_defects import write_set
    from trainer.errors import DataError

    try:
        files = image_files(args.images)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: out: '{args.out}' is not empty; give a new folder", file=sys.stderr)
        return 2
    if not (0 <= args.val_share and 0 <= args.test_share and args.val_share + args.test_share < 1):
        print("error: --val-share and --test-share must be >= 0 and sum below 1", file=sys.stderr)
        return 2
    counts = write_set(files, args.out, args.seed, args.val_share, args.test_share)
    print(f"wrote {sum(counts.values())} images to {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
