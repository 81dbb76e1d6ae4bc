"""Transfer learning, measured: fine-tune product A's model on a few boards of product B.

1. Product A (the default set, ``python train.py``) trains the source model, unless
   ``--source CKPT`` names one (the README's: ``python train.py trainer.max_epochs=16
   callbacks.early_stopping.patience=6``).
2. For each budget of product-B training boards (25, 50, 100, 200) and each ``--seeds`` seed, two
   runs of ``train.py`` on ``data.generator.product=b`` with the same budget (at most 40 epochs,
   early stopping on val F1 with patience 10, batch 16, the ``inspection`` augmentation preset):
   from random weights, and from A's best checkpoint (``model.pretrained_path``: the real timm
   loading path; the backbone is taken, the head is new; ``model.freeze_backbone_epochs``
   head-only epochs while the batch norms adapt to B (``model.adapt_batch_norm``), then the
   backbone at ``--backbone-lr-ratio`` 0.3 of the head's learning rate).
3. Both are scored on B's whole test split (the same 400 boards for every budget: a board's
   image depends on its seed, split and index only) and on the same validation boards.

Writes ``<out>/transfer.json`` ({"rows": [{"train_images", "scratch_test_acc",
"transfer_test_acc", "scratch_seconds", "transfer_seconds", ...per seed}], ...}; with several
seeds, the means) and ``<out>/transfer.png``.

    python scripts/studies/transfer_benchmark.py                 # about 40 minutes on 2 CPU cores
    python scripts/studies/transfer_benchmark.py --source runs/<time>/checkpoints/epoch_007.ckpt \
        --seeds 0 1 2 --jobs 2                                   # two runs at a time, 1 thread each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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


def train(
    overrides: list[str], run_dir: Path, threads: int | None = None
) -> tuple[dict[str, float], float]:
    """``python train.py OVERRIDES`` into ``run_dir``: its metrics.json and wall seconds."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "train.py", *QUIET, *overrides, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads:  # runs side by side share the cores instead of oversubscribing them
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    log_path = run_dir.parent / f"{run_dir.name}.log"
    with open(log_path, "w") as log:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"train.py failed (exit {done.returncode}): see {log_path}")
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
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=10, help="early stopping on val F1")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--augment", default="inspection", help="configs/data/augment preset")
    p.add_argument("--backbone-lr-ratio", type=float, default=0.3, help="fine-tuning only")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="each run once per seed")
    p.add_argument("--jobs", type=int, default=1, help="runs side by side (threads split)")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark")
    args = p.parse_args()
    if args.source is not None and not args.source.is_file():
        p.error(f"--source: '{args.source}' is not a file; give product A's best checkpoint")
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: give 1 or more runs side by side")

    work = args.out / "transfer_runs"
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    source_seconds = None
    if args.source is None:
        _, source_seconds = train([], work / "source")
        args.source = best_checkpoint(work / "source")
    # The same budget for both starts: epochs, early stopping, batch, augmentation, validation.
    common = [
        f"data.generator.product={args.target}",
        f"data.generator.num_val={args.num_val}",
        f"trainer.max_epochs={args.epochs}",
        f"callbacks.early_stopping.patience={args.patience}",
        f"data.batch_size={args.batch_size}",
        f"data/augment={args.augment}",
        "trainer.log_every_n_steps=1",
    ]
    starts = {
        "scratch": ["model.pretrained=false"],
        # head-only epoch(s) with the batch norms adapting to B (AdaBN), then the backbone at
        # backbone_lr_ratio of the head's learning rate
        "transfer": [
            "model.pretrained=true",
            f"model.pretrained_path={args.source.resolve()}",
            "model.adapt_batch_norm=true",
            f"model.backbone_lr_ratio={args.backbone_lr_ratio}",
        ],
    }
    runs = [(n, start, seed) for n in args.images for seed in args.seeds for start in starts]

    def one(run: tuple[int, str, int]) -> tuple[float, float]:
        n, start, seed = run
        overrides = [*common, f"data.generator.num_train={n}", f"seed={seed}", *starts[start]]
        metrics, seconds = train(overrides, work / f"{start}_{n}_seed{seed}", threads)
        line = {"train_images": n, "start": start, "seed": seed, "test_acc": metrics["test/acc"]}
        print(json.dumps({**line, "seconds": round(seconds, 1)}), flush=True)
        return metrics["test/acc"], seconds

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = dict(zip(runs, pool.map(one, runs), strict=True))
    rows = []
    for n in sorted(set(args.images)):
        acc = {s: [results[(n, s, seed)][0] for seed in args.seeds] for s in starts}
        sec = {s: [results[(n, s, seed)][1] for seed in args.seeds] for s in starts}
        rows.append(
            {
                "train_images": n,
                "scratch_test_acc": statistics.mean(acc["scratch"]),
                "transfer_test_acc": statistics.mean(acc["transfer"]),
                "scratch_seconds": round(statistics.mean(sec["scratch"]), 1),
                "transfer_seconds": round(statistics.mean(sec["transfer"]), 1),
                "scratch_test_acc_per_seed": acc["scratch"],
                "transfer_test_acc_per_seed": acc["transfer"],
            }
        )

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "rows": rows,
        "source_checkpoint": str(args.source),
        "source_seconds": source_seconds,
        "target_product": args.target,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "settings": {"common": common, "transfer": starts["transfer"][2:]},
    }
    (args.out / "transfer.json").write_text(json.dumps(result, indent=2))
    plot(rows, args.out / "transfer.png")
    seeds = f" (mean of {len(args.seeds)} seeds)" if len(args.seeds) > 1 else ""
    print(
        f"\n| product-B training boards | from random weights{seeds} | from product A{seeds} "
        "| seconds (random / A) |"
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
