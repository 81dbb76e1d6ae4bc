"""Transfer learning, measured: fine-tune product A's model on a few boards of product B.

1. Product A (the default set, ``python train.py``) trains the source model, unless
   ``--source CKPT`` names one.
2. For each budget of product-B training boards (25, 50, 100, 200), two runs of ``train.py`` on
   ``data.generator.product=b`` with the same epochs, batch and schedule: from random weights,
   and from A's best checkpoint (``model.pretrained_path``: the real timm loading path; the
   backbone is taken, the head is new, ``model.freeze_backbone_epochs`` head-only epochs, then
   the backbone at ``model.backbone_lr_ratio`` of the head's learning rate).
3. Both are scored on B's whole test split (the same 400 boards for every budget: a board's
   image depends on its seed, split and index only) and on the same validation boards.

Writes ``<out>/transfer.json`` ({"rows": [{"train_images", "scratch_test_acc",
"transfer_test_acc", "scratch_seconds", "transfer_seconds"}], ...}) and ``<out>/transfer.png``.

    python scripts/studies/transfer_benchmark.py                 # about 20 minutes on 2 CPU cores
    python scripts/studies/transfer_benchmark.py --source outputs/train/runs/<time>/checkpoints/epoch_007.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

QUIET = [
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "print_config=false",
    "history.path=null",  # a study: the user's run history stays theirs
    "resume=never",
]


def train(overrides: list[str], run_dir: Path) -> tuple[dict[str, float], float]:
    """``python train.py OVERRIDES`` into ``run_dir``: its metrics.json and wall seconds."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "train.py", *QUIET, *overrides, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    seconds = time.perf_counter() - start
    return json.loads((run_dir / "metrics.json").read_text())["metrics"], seconds


def best_checkpoint(run_dir: Path) -> Path:
    best = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    if not best:
        raise SystemExit(f"no best checkpoint in {run_dir / 'checkpoints'}")
    return best[-1]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [r["train_images"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    ax.plot(images, [r["transfer_test_acc"] for r in rows], "o-", label="from product A's model")
    ax.plot(images, [r["scratch_test_acc"] for r in rows], "s--", label="from random weights")
    ax.set_xscale("log", base=2)
    ax.set_xticks(images, [str(n) for n in images])
    ax.set_xlabel("product-B training boards")
    ax.set_ylabel("test accuracy on product B")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Transfer to a new board design")
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, help="product A's checkpoint (default: train one)")
    p.add_argument("--target", default="b", help="the product to transfer to (b or c)")
    p.add_argument("--images", type=int, nargs="+", default=[25, 50, 100, 200])
    p.add_argument("--num-val", type=int, default=100, help="product-B validation boards")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark")
    args = p.parse_args()

    work = args.out / "transfer_runs"
    source_seconds = None
    if args.source is None:
        _, source_seconds = train([], work / "source")
        args.source = best_checkpoint(work / "source")
    rows = []
    for n in args.images:
        common = [
            f"data.generator.product={args.target}",
            f"data.generator.num_train={n}",
            f"data.generator.num_val={args.num_val}",
            f"trainer.max_epochs={args.epochs}",
            f"data.batch_size={args.batch_size}",
            "trainer.log_every_n_steps=1",
        ]
        scratch, scratch_s = train([*common, "model.pretrained=false"], work / f"scratch_{n}")
        transfer, transfer_s = train(
            [*common, "model.pretrained=true", f"model.pretrained_path={args.source.resolve()}"],
            work / f"transfer_{n}",
        )
        rows.append(
            {
                "train_images": n,
                "scratch_test_acc": scratch["test/acc"],
                "transfer_test_acc": transfer["test/acc"],
                "scratch_seconds": round(scratch_s, 1),
                "transfer_seconds": round(transfer_s, 1),
                "scratch_test_f1": scratch["test/f1"],
                "transfer_test_f1": transfer["test/f1"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "rows": rows,
        "source_checkpoint": str(args.source),
        "source_seconds": source_seconds,
        "target_product": args.target,
        "num_val": args.num_val,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
    }
    (args.out / "transfer.json").write_text(json.dumps(result, indent=2))
    plot(rows, args.out / "transfer.png")
    print(
        "\n| product-B training boards | from random weights | from product A | seconds (random / A) |"
    )
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['train_images']} | {r['scratch_test_acc']:.3f} | {r['transfer_test_acc']:.3f} "
            f"| {r['scratch_seconds']:.0f} / {r['transfer_seconds']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
